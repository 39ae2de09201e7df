"""Random-weight models of real architectures: configs, weights, tokenizer, and a real build on CPU."""

from __future__ import annotations

import pytest
import torch

from autotune import models
from autotune.config.candidate import Candidate
from autotune.errors import InputError
from autotune.config.models import default_study_name, resolve_model
from autotune.worker.trial import run
from autotune.worker.job import Job
from autotune.config.workload import Workload

# name -> (parameters in billions, hidden, layers, heads, kv heads, vocab)
SHAPES = {"gemma-2b": (2.506, 2048, 18, 8, 1, 256000), "llama-3-8b": (8.030, 4096, 32, 32, 8, 128256),
          "mistral-7b": (7.242, 4096, 32, 32, 8, 32000), "qwen2.5-0.5b": (0.494, 896, 24, 14, 2, 151936)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_config_for_gives_the_real_architecture(name):
    config = models.config_for(f"random:{name}")
    billions, hidden, layers, heads, kv_heads, vocab = SHAPES[name]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.vocab_size) == (hidden, layers, heads, kv_heads, vocab)
    with torch.device("meta"):
        skeleton = models.model_class(config)(config)
    assert sum(p.numel() for p in skeleton.parameters()) / 1e9 == pytest.approx(billions, abs=0.001)
    assert config.dtype == torch.bfloat16


def test_gemma_2b_is_the_shape_the_gpu_numbers_were_measured_on():
    config = models.config_for("random:gemma-2b")
    assert (config.head_dim, config.intermediate_size, config.tie_word_embeddings) == (256, 16384, True)


def test_config_for_a_folder_reads_its_config(bundled_model):
    assert models.config_for(str(bundled_model)).hidden_size == 256


def test_unknown_random_model_is_an_input_error_naming_the_known_ones():
    with pytest.raises(InputError, match="random:gemma-2b"):
        resolve_model("random:gpt-5")
    assert resolve_model("random:gemma-2b") == "random:gemma-2b"
    assert default_study_name("random:gemma-2b") == "random-gemma-2b"


def test_random_weights_are_deterministic_and_the_same_across_dtypes():
    config = small("qwen2.5-0.5b")
    fp32 = models.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", config=config)
    bf16 = models.random_state_dict("random:qwen2.5-0.5b", torch.bfloat16, "cpu", config=config)
    again = models.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", config=config)
    other_seed = models.random_state_dict("random:qwen2.5-0.5b", torch.float32, "cpu", seed=1, config=config)
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


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_random_model_loads_in_the_architecture_dtype_or_the_one_asked_for(name):
    model = models.load_random_model(f"random:{name}", {}, "cpu", config=small(name))
    assert model.dtype == torch.bfloat16 and type(model).__name__ == models.config_for(f"random:{name}").architectures[0]
    ids = torch.tensor([[5, 6, 7]])
    assert model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                          do_sample=False).shape == (1, 5)
    asked = models.load_random_model(f"random:{name}", {"dtype": "float32", "attn_implementation": "eager"}, "cpu",
                                     config=small(name))
    assert asked.dtype == torch.float32 and asked.config._attn_implementation == "eager"
    name_ = next(n for n, p in asked.named_parameters() if p.dim() == 2 and "embed" not in n)
    assert torch.equal(dict(asked.named_parameters())[name_].to(torch.bfloat16), dict(model.named_parameters())[name_])


def test_byte_tokenizer_round_trips_with_the_usual_special_ids():
    tokenizer = models.byte_tokenizer()
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
