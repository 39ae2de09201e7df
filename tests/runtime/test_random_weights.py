"""Random weights of the built-in architectures: deterministic across dtypes, loaded through from_pretrained,
the byte-level tokenizer, and the whole worker path on a real architecture on CPU."""

from __future__ import annotations

import pytest
import torch

from autotune.config import models
from autotune.config.candidate import Candidate
from autotune.config.workload import Workload
from autotune.runtime import random_weights
from autotune.worker.job import Job
from autotune.worker.trial import run

ARCHITECTURES = ("gemma-2b", "llama-3-8b", "mistral-7b", "qwen2.5-0.5b")


def test_random_weights_are_deterministic_and_the_same_across_dtypes():
    config = small("qwen2.5-0.5b")
    fp32 = random_weights.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", config=config)
    bf16 = random_weights.random_state_dict("random:qwen2.5-0.5b", torch.bfloat16, "cpu", config=config)
    again = random_weights.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", config=config)
    other_seed = random_weights.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", seed=1, config=config)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(fp32[name], again[name]) and not torch.equal(fp32[name], other_seed[name])
    assert torch.equal(fp32[name].to(torch.bfloat16), bf16[name])
    assert fp32[name].std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(fp32["model.norm.weight"], torch.ones(256))
    assert not fp32["model.layers.0.self_attn.q_proj.bias"].any()
    assert "lm_head.weight" not in fp32  # tied to the embeddings


def small(name: str):
    config = models.config_for(f"random:{name}")
    # a small copy of the architecture, for speed (the attention shape, head_dim included, stays)
    config.num_hidden_layers, config.vocab_size, config.hidden_size, config.intermediate_size = 1, 512, 256, 512
    return config


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_random_model_loads_in_the_architecture_dtype_or_the_one_asked_for(name):
    model = random_weights.load_random_model(f"random:{name}", {}, "cpu", config=small(name))
    assert model.dtype == torch.bfloat16 and type(model).__name__ == models.config_for(f"random:{name}").architectures[0]
    ids = torch.tensor([[5, 6, 7]])
    assert model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                          do_sample=False).shape == (1, 5)
    asked = random_weights.load_random_model(f"random:{name}", {"dtype": "float32", "attn_implementation": "eager"}, "cpu",
                                     config=small(name))
    assert asked.dtype == torch.float32 and asked.config._attn_implementation == "eager"
    name_ = next(n for n, p in asked.named_parameters() if p.dim() == 2 and "embed" not in n)
    assert torch.equal(dict(asked.named_parameters())[name_].to(torch.bfloat16), dict(model.named_parameters())[name_])


def test_byte_tokenizer_round_trips_with_the_usual_special_ids():
    tokenizer = random_weights.byte_tokenizer()
    ids = tokenizer("def f(x):\n    return 'é'")["input_ids"]
    assert tokenizer.decode(ids) == "def f(x):\n    return 'é'"
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    assert max(ids) < len(tokenizer) == 259


def test_random_qwen_builds_on_cpu_generates_and_says_its_equivalence_is_not_meaningful(tmp_path):
    """The whole worker path on the real 0.5B architecture: build from random weights, generate, score."""
    workload = Workload(prompts=("def add(a, b):\n",), max_new_tokens=4)
    job = Job(model="random:qwen2.5-0.5b", candidate=Candidate(dtype="float32"), workload=workload, device="cpu",
              role="baseline", reference_path=str(tmp_path / "ref.pt"), result_path=str(tmp_path / "r.json"),
              repeats=1, warmup=0)
    m = run(job)
    assert m.ok and m.equivalence_meaningful is False
    assert m.generated_tokens == 4 and m.decode_tokens_per_s > 0
    assert m.top1_agreement == 1.0  # the baseline against itself; recorded, but not judged
    assert m.peak_memory_bytes > 0.494e9 * 4  # float32 weights of the real architecture
