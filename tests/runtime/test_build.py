"""Every knob's candidate builds and generates on CPU with the bundled model (where the CPU supports it)."""

from __future__ import annotations

from support import build_candidate

import importlib.util

import pytest
import torch

from autotune.config.candidate import Candidate
from autotune.runtime.build import static_cache_length
from autotune.worker.measure import run_pass
from autotune.config.workload import Workload

PROMPTS = ("def add(a, b):\n", "import os\n\n\ndef list_files(root):\n")
WORKLOAD = Workload(prompts=PROMPTS, batch_size=2, max_new_tokens=4)
HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")


def generate(model, candidate: Candidate, workload: Workload = WORKLOAD):
    built = build_candidate(str(model), candidate, workload, "cpu")
    with built.runtime_context():
        continuations, timings = run_pass(built, workload)
    assert [len(c) for c in continuations] == [workload.max_new_tokens] * len(workload.prompts)
    return built, continuations


@pytest.mark.parametrize("candidate", [
    Candidate(dtype="float32"), Candidate(dtype="bfloat16"), Candidate(dtype="float16"),
    Candidate(attn_implementation="eager"), Candidate(attn_implementation="sdpa"),
    Candidate(attn_implementation="sdpa", sdpa_backend="math"),
    Candidate(dtype="float32", attn_implementation="sdpa", sdpa_backend="flash"),
    Candidate(pad_to_multiple_of=8), Candidate(pad_to_multiple_of=64),
], ids=lambda c: c.describe())
def test_knob_builds_and_generates(bundled_model, candidate):
    built, _ = generate(bundled_model, candidate)
    if candidate.dtype != "auto":
        assert built.model.dtype == getattr(torch, candidate.dtype)
    if candidate.attn_implementation != "auto":
        assert built.model.config._attn_implementation == candidate.attn_implementation
    if candidate.pad_to_multiple_of:
        assert built.tokenize(PROMPTS)["input_ids"].shape[1] % candidate.pad_to_multiple_of == 0


def test_the_sdpa_backend_really_restricts_the_kernel(bundled_model):
    # PyTorch has no memory-efficient SDPA kernel for CPU: inside its context, attention has no kernel left
    built = build_candidate(str(bundled_model), Candidate(attn_implementation="sdpa", sdpa_backend="efficient"), WORKLOAD, "cpu")
    with pytest.raises(RuntimeError, match="No viable backend"), built.runtime_context():
        run_pass(built, WORKLOAD)
    run_pass(built, WORKLOAD)  # outside the context the same model generates


def test_scoring_falls_back_to_math_only_where_the_candidates_kernel_cannot_run(bundled_model):
    # On the H200 the efficient kernel decoded a static-loop trial and then refused the teacher-forced pass
    # (grouped-query attention without a mask). Here: CPU has no efficient kernel at all.
    from autotune.worker import equivalence

    built = build_candidate(str(bundled_model), Candidate(attn_implementation="sdpa", sdpa_backend="efficient"), WORKLOAD, "cpu")
    ids = built.tokenizer(PROMPTS[0])["input_ids"]
    with pytest.raises(RuntimeError, match="No viable backend"), built.runtime_context():
        equivalence.teacher_forced_logprobs(built.model, ids, [1, 2, 3], "cpu")
    with built.scoring_context():
        scored = equivalence.teacher_forced_logprobs(built.model, ids, [1, 2, 3], "cpu")
    assert scored.shape[0] == 3 and torch.isfinite(scored).all()
    # a kernel that can run the inputs is the one used: flash on CPU scores as it generates
    flash = build_candidate(str(bundled_model), Candidate(attn_implementation="sdpa", sdpa_backend="flash"), WORKLOAD, "cpu")
    with flash.scoring_context():
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
        if hasattr(torch._C, "_get_sdp_priority_order"):  # the candidate's kernel is tried first
            assert torch._C._get_sdp_priority_order()[0] == int(torch.nn.attention.SDPBackend.FLASH_ATTENTION)


@pytest.mark.parametrize("cache", ["static"])
@pytest.mark.parametrize("pad", [None, 16])
def test_static_cache_is_sized_from_the_workload(bundled_model, cache, pad):
    built, _ = generate(bundled_model, Candidate(cache_implementation=cache, pad_to_multiple_of=pad))
    longest = built.tokenize(PROMPTS)["input_ids"].shape[1]
    assert built.max_cache_len == longest + WORKLOAD.max_new_tokens
    assert built.generation_config.max_cache_len == built.max_cache_len
    assert built.generation_config.disable_compile is True  # compile=off means off
    assert static_cache_length(built.tokenizer, WORKLOAD, pad) == built.max_cache_len


def test_prompt_lookup_and_assisted_decoding(bundled_model):
    one = Workload(prompts=("def add(a, b):\n    return a + b\n\n\ndef add3(a, b, c):\n",), max_new_tokens=6)
    generate(bundled_model, Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=3, max_matching_ngram_size=2),
             one)
    # the bundled model as its own assistant: a real assistant pair with one tokenizer
    built, _ = generate(bundled_model, Candidate(decoding="assisted", num_assistant_tokens=3,
                                                 num_assistant_tokens_schedule="heuristic",
                                                 assistant=str(bundled_model)), one)
    assert built.assistant is not None


@needs_bnb
@pytest.mark.parametrize("candidate", [
    Candidate(quantization="bnb_8bit", llm_int8_threshold=4.0),
    Candidate(quantization="bnb_4bit"),
    Candidate(quantization="bnb_4bit", bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True,
              bnb_4bit_compute_dtype="bfloat16"),
], ids=lambda c: c.describe())
def test_bitsandbytes_builds_and_generates(bundled_model, candidate):
    built, _ = generate(bundled_model, candidate)
    config = built.model.config.quantization_config
    assert config.load_in_8bit == (candidate.quantization == "bnb_8bit")
    assert config.load_in_4bit == (candidate.quantization == "bnb_4bit")
    if candidate.quantization == "bnb_8bit":
        assert config.llm_int8_threshold == 4.0
    else:
        assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == \
            (candidate.bnb_4bit_quant_type, candidate.bnb_4bit_use_double_quant)
        assert config.bnb_4bit_compute_dtype == getattr(torch, candidate.bnb_4bit_compute_dtype)
    linear = type(built.model.model.layers[0].self_attn.q_proj).__name__
    assert linear == ("Linear8bitLt" if candidate.quantization == "bnb_8bit" else "Linear4bit")


@pytest.mark.slow
def test_static_decode_loop_gives_generates_tokens(bundled_model):
    """The decode-loop knob: a StaticCache and one compiled decode step, the same greedy tokens as generate()."""
    workload = Workload(prompts=PROMPTS, batch_size=2, max_new_tokens=8)
    _, plain = generate(bundled_model, Candidate(dtype="float32"), workload)
    candidate = Candidate(dtype="float32", cache_implementation="static", compile="default", decode_loop="static_loop",
                          compile_fullgraph=True)
    built, looped = generate(bundled_model, candidate, workload)
    assert built.loop is not None and built.loop.max_cache_len == built.max_cache_len
    assert looped == plain


@pytest.mark.slow
def test_weight_only_int8_builds_and_runs_the_compiled_decode_loop(bundled_model):
    """quantization=int8_weight_only: the worker's build makes every linear layer int8 before the static loop
    compiles its decode step (batch 2: the step's rows stay under GEMV_ROWS), and it generates."""
    from autotune.runtime.quant.quantize import Int8WeightOnlyLinear

    candidate = Candidate(dtype="float32", quantization="int8_weight_only", cache_implementation="static",
                          compile="default", decode_loop="static_loop", compile_fullgraph=True)
    built, _ = generate(bundled_model, candidate)
    assert isinstance(built.model.model.layers[0].mlp.up_proj, Int8WeightOnlyLinear) and built.loop is not None
    assert built.model.model.layers[0].mlp.up_proj.weight.dtype == torch.int8


def test_building_a_candidate_with_coordinate_descent_sets_it_in_inductor(bundled_model):
    import torch._inductor.config as inductor_config

    candidate = Candidate(cache_implementation="static", compile="default", compile_tuning="coordinate_descent")
    with inductor_config.patch(coordinate_descent_tuning=False):  # Inductor's own way to restore it after
        build_candidate(str(bundled_model), candidate, WORKLOAD, "cpu")
        assert inductor_config.coordinate_descent_tuning is True


def test_a_flex_attention_candidate_is_built_with_the_fitted_flex_attention(bundled_model, monkeypatch):
    """build() fits transformers' flex attention (autotune.runtime.attention.fit_flex_attention) as load_preset does, so
    heads wider than 128 compile on CUDA; on CPU the tokens stay SDPA's. (One prompt: torch 2.13's CPU flex
    attention kernel for a left-padded batch does not compile, a C++ error of Inductor.)"""
    from transformers import AttentionInterface

    one = Workload(prompts=PROMPTS[:1], batch_size=1, max_new_tokens=4)

    monkeypatch.setitem(AttentionInterface._global_mapping, "flex_attention",
                        AttentionInterface._global_mapping["flex_attention"])
    _, sdpa = generate(bundled_model, Candidate(attn_implementation="sdpa"), one)
    built, flex = generate(bundled_model, Candidate(attn_implementation="flex_attention"), one)
    assert built.model.config._attn_implementation == "flex_attention"
    assert getattr(AttentionInterface._global_mapping["flex_attention"], "autotune_fitted", False)
    assert flex == sdpa
