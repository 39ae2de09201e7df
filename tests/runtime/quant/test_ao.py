"""torchao's formats through the build path: from_pretrained quantizes with the candidate's plain dict, a random
model gets the same linears quantized by quantize_, the result saves and loads in plain transformers, and
autotune's static decode loop gives generate()'s tokens with it (CPU, torchao int8 weight-only)."""

from __future__ import annotations

import pytest
import torch
from support import BUNDLED_MODEL, build_candidate
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from autotune.config import models
from autotune.config.candidate import Candidate
from autotune.config.workload import Workload
from autotune.runtime import random_weights
from autotune.runtime.decode import StaticDecodeLoop
from autotune.runtime.quant import ao

pytest.importorskip("torchao")
INT8 = Candidate(quantization="torchao_int8_weight_only")
# float32, as tests/runtime/test_decode.py compares the loops with generate() (in bfloat16, with these int8
# weights, the two parted after a few tokens on CPU)
INT8_FP32 = Candidate(dtype="float32", quantization="torchao_int8_weight_only")


def quantized_linears(model) -> dict[str, str]:
    return {name: type(module.weight).__name__ for name, module in model.named_modules()
            if isinstance(module, nn.Linear)}


def test_a_built_torchao_candidate_holds_torchao_weights_and_saves_for_plain_transformers(tmp_path):
    built = build_candidate(BUNDLED_MODEL, INT8, Workload.default(max_new_tokens=4))
    kinds = quantized_linears(built.model)
    assert kinds.pop("lm_head") == "Parameter"  # transformers leaves the output embeddings alone
    assert set(kinds.values()) == {"Int8Tensor"} and len(kinds) > 10
    ids = built.tokenizer("def add(a, b):", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = built.model(ids).logits
    built.model.save_pretrained(tmp_path, safe_serialization=False)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no quantization_config: the saved one
    assert quantized_linears(again) == quantized_linears(built.model)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)


def test_a_random_model_gets_the_linears_from_pretrained_would_quantize():
    config = models.config_for("random:qwen2.5-0.5b")
    config.num_hidden_layers, config.vocab_size, config.hidden_size, config.intermediate_size = 1, 512, 256, 512
    kwargs = {"dtype": "bfloat16", **INT8.load_kwargs()}
    model = random_weights.load_random_model("random:qwen2.5-0.5b", kwargs, "cpu", config=config)
    state = random_weights.random_state_dict("random:qwen2.5-0.5b", torch.bfloat16, "cpu", config=config)
    loaded = random_weights.model_class(config).from_pretrained(None, config=config, state_dict=state, **kwargs)
    assert quantized_linears(model) == quantized_linears(loaded)
    assert "Int8Tensor" in quantized_linears(model).values()
    plain = random_weights.load_random_model("random:qwen2.5-0.5b", {"dtype": "bfloat16"}, "cpu", config=config)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
        assert ao.quantize_as_loaded(plain, INT8.load_kwargs()["quantization_config"]) == 7
        assert torch.equal(plain(ids).logits, model(ids).logits)


@pytest.mark.parametrize("compile_mode", [None, pytest.param("default", marks=pytest.mark.slow)])
def test_the_static_decode_loop_gives_generates_tokens_with_torchao_int8(compile_mode):
    model = AutoModelForCausalLM.from_pretrained(BUNDLED_MODEL, **INT8_FP32.load_kwargs()).eval()
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL)
    tokenizer.padding_side = "left"
    inputs = tokenizer(["def add(a, b):\n    return", "class Point:\n    def __init__(self, x, y):\n"],
                       return_tensors="pt", padding=True)
    config = GenerationConfig(**{**model.generation_config.to_dict(), "do_sample": False, "max_new_tokens": 16})
    with torch.inference_mode():
        expected = model.generate(**inputs, generation_config=config)
    loop = StaticDecodeLoop(model, max_cache_len=inputs["input_ids"].shape[1] + 16, compile_mode=compile_mode,
                            fullgraph=False)
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)
