from __future__ import annotations

import optuna
import pytest
import yaml

from autotune.config.candidate import Candidate
from autotune.errors import SpaceError
from autotune.config.space import SearchSpace
from support import ROOT, space_for

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cpu_space(**kw):
    return space_for(SearchSpace.load("default"), "cpu", batch_size=kw.get("batch_size", 1),
                                                       assistant=kw.get("assistant"))


def test_default_space_on_cpu_searches_the_cpu_knobs():
    space = cpu_space(assistant="draft")
    values = {k.name: set(k.values) for k in space.knobs}
    assert values["dtype"] == {"auto", "float32", "bfloat16"}
    assert values["attn_implementation"] >= {"eager", "sdpa"}
    assert values["cache_implementation"] == {"dynamic", "static"}
    assert values["compile"] == {"off", "default"}
    assert values["decoding"] == {"standard", "prompt_lookup", "assisted"}
    left_out = {(k, v) for k, v, _ in space.left_out}
    assert ("dtype", "float16") in left_out and ("compile", "reduce-overhead") in left_out


def test_assisted_decoding_needs_an_assistant_and_batch_one():
    assert ("decoding", "assisted") in {(k, v) for k, v, _ in cpu_space().left_out}
    assert ("decoding", "prompt_lookup") in {(k, v) for k, v, _ in cpu_space(batch_size=2, assistant="x").left_out}


def test_suggest_gives_valid_candidates_and_baseline_params_round_trip():
    space = cpu_space()
    file_rules = {rule["reason"] for rule in yaml.safe_load(
        (ROOT / "autotune/config/search_spaces/default.yaml").read_text())["invalid"]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(space.params_of(Candidate()))
    first = space.suggest(study.ask())
    assert first == Candidate()
    for _ in range(40):
        candidate = space.suggest(study.ask())
        assert space.contains(candidate)
        # the conditions prevent every invalid combination but those the file's `invalid` rules name:
        # those are recorded as unsupported without a launch
        assert space.invalid_reason(candidate) in {None, *file_rules}
        if candidate.compile != "off":
            assert candidate.cache_implementation == "static"


def test_invalid_rules_from_the_file():
    space = SearchSpace.from_yaml("""
knobs:
  decoding: {values: [standard, prompt_lookup]}
  cache_implementation: {values: [dynamic, static]}
invalid:
  - if: {decoding: [prompt_lookup], cache_implementation: [static]}
    reason: prompt lookup runs with a dynamic cache
""")
    assert space.invalid_reason(Candidate(decoding="prompt_lookup", cache_implementation="static")) == \
        "prompt lookup runs with a dynamic cache"
    assert space.invalid_reason(Candidate(decoding="prompt_lookup")) is None
    assert "static cache" in space.invalid_reason(Candidate(compile="default"))


def test_baseline_value_is_always_in_the_space():
    space = SearchSpace.from_yaml("knobs:\n  dtype: {values: [float32]}\n")
    assert space.knob("dtype").values == ("auto", "float32")


def test_yaml_spellings_of_off_and_none():
    space = SearchSpace.from_yaml("knobs:\n  cache_implementation: {values: [static]}\n"
                                  "  compile: {values: [off, default], when: {cache_implementation: [static]}}\n"
                                  "  pad_to_multiple_of: {values: [none, 8]}\n")
    assert space.knob("compile").values == ("off", "default")
    assert space.knob("pad_to_multiple_of").values == (None, 8)


@pytest.mark.parametrize("text,message", [
    ("knobs: [", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("knobs:\n  dtype: {values: []}\n", "non-empty list"),
    ("knobs:\n  dtype: {values: [fp8]}\n", "has no value 'fp8'"),
    ("knobs:\n  warp: {values: [9]}\n", "unknown knob 'warp'"),
    ("knobs:\n  dtype: {values: [float32], colour: red}\n", "unknown key"),
    ("knobs:\n  compile: {values: [default], when: {cache_implementation: [static]}}\n", "listed before it"),
    ("knobs:\n  dtype: {values: [float32]}\ninvalid:\n  - {if: {dtype: [float32]}}\n", "exactly the keys"),
    ("knobs:\n  dtype: {values: [float32]}\nextra: 1\n", "unknown top-level key"),
])
def test_broken_space_files_get_clear_errors(text, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_yaml(text)


def test_fingerprint_changes_with_the_space():
    a = SearchSpace.from_yaml("knobs:\n  dtype: {values: [float32]}\n")
    b = SearchSpace.from_yaml("knobs:\n  dtype: {values: [bfloat16]}\n")
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == SearchSpace.from_yaml("knobs:\n  dtype: {values: [float32]}\n").fingerprint()


def left_out_of(space) -> dict:
    return {(k, v): why for k, v, why in space.left_out}


def test_cpu_leaves_out_the_sdpa_kernels_and_cache_it_cannot_run_with_reasons():
    space = space_for(SearchSpace.load("default"), "cpu", batch_size=1, assistant=None, has_bitsandbytes=True)
    left = left_out_of(space)
    assert space.knob("sdpa_backend").values == ("auto", "flash", "math")
    assert "no efficient SDPA kernel for CPU" in left[("sdpa_backend", "efficient")]
    assert "cudnn" in left[("sdpa_backend", "cudnn")]
    assert "CUDA streams" in left[("cache_implementation", "offloaded_static")]
    assert space.knob("quantization").values == ("none", "bnb_8bit", "bnb_4bit", "int8_weight_only")


def test_the_triton_int8_kernel_is_searched_on_cuda_with_triton_only():
    def kernels(device, has_triton):
        space = space_for(SearchSpace.load("default"), device, batch_size=1, assistant=None,
                                                            has_triton=has_triton)
        return space.knob("int8_kernel").values, left_out_of(space).get(("int8_kernel", "triton"))

    assert kernels("cuda", True) == (("inductor", "triton"), None)
    assert kernels("cuda", False) == (("inductor",), "Triton is not installed")
    assert kernels("cpu", True) == (("inductor",), "autotune's Triton int8 kernel runs on CUDA")
    assert SearchSpace.load("default").knob("fuse_projections").values == (False, True)


def test_above_eight_rows_the_kernel_and_stacking_are_left_out_and_a_recorded_space_without_values_reads_back():
    """At batch 16 a decode step's products are matrix products: the Triton kernel and stacked siblings build
    what their defaults build. A space recorded with every value of a knob left out (the grid's only
    int8_kernel value, triton, on a CPU) reads back."""
    wide = space_for(SearchSpace.load("default"), "cuda", batch_size=16, assistant=None, has_triton=True)
    assert wide.knob("int8_kernel").values == ("inductor",) and wide.knob("fuse_projections").values == (False,)
    assert "more than 8 rows" in left_out_of(wide)[("fuse_projections", True)]
    grid = SearchSpace.load(str(ROOT / "benchmarks" / "data" / "grid-space.yaml"))
    on_cpu = space_for(grid, "cpu", batch_size=1, assistant=None)
    assert on_cpu.knob("int8_kernel").values == ()
    again = SearchSpace.from_dict(on_cpu.to_dict())
    assert again.knob("int8_kernel").values == () and again.fingerprint() == on_cpu.fingerprint()


def test_random_weights_leave_speculative_decoding_out_with_the_reason():
    # random weights repeat one token, so every draft is accepted: on the H200 prompt lookup was the "best"
    # of a 30-trial random:gemma-2b study at 5x its baseline, which no real text would get
    space = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant="draft", random_weights=True)
    assert space.knob("decoding").values == ("standard",)
    assert "every draft is accepted" in left_out_of(space)[("decoding", "prompt_lookup")]
    assert "every draft is accepted" in left_out_of(space)[("decoding", "assisted")]
    trained = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant="draft")
    assert set(trained.knob("decoding").values) == {"standard", "prompt_lookup", "assisted"}


def test_bitsandbytes_is_left_out_where_it_does_not_import():
    space = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant=None, has_bitsandbytes=False)
    assert space.knob("quantization").values == ("none", "int8_weight_only")  # autotune's own needs torch only
    assert "pip install bitsandbytes" in left_out_of(space)[("quantization", "bnb_4bit")]


@pytest.mark.parametrize("compileable", [False, True])
def test_bitsandbytes_with_compile_is_invalid_where_transformers_says_it_cannot_compile(compileable):
    space = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant=None, has_bitsandbytes=True,
                                                        bnb_compileable=compileable)
    candidate = Candidate(quantization="bnb_4bit", cache_implementation="static", compile="default",
                          compile_api="generate")
    reason = space.invalid_reason(candidate)
    if compileable:
        assert reason is None
    else:
        assert "is_compileable" in reason
    assert space.invalid_reason(Candidate(quantization="bnb_4bit", cache_implementation="static")) is None


def test_machine_dependent_invalid_combinations():
    cuda = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant=None)
    cpu = space_for(SearchSpace.load("default"), "cpu", batch_size=1, assistant=None)
    flash_fp32 = Candidate(dtype="float32", attn_implementation="sdpa", sdpa_backend="flash")
    assert "float16 and bfloat16" in cuda.invalid_reason(flash_fp32)
    assert cpu.invalid_reason(flash_fp32) is None  # PyTorch's CPU flash kernel runs float32
    assert "flash-attn" in cuda.invalid_reason(Candidate(dtype="float32", attn_implementation="flash_attention_2"))
    assert "attn_implementation=sdpa" in cpu.invalid_reason(Candidate(attn_implementation="eager", sdpa_backend="math"))
    assert cuda.fingerprint() != cpu.fingerprint()


def test_every_suggestion_of_the_full_cuda_space_is_valid_or_rejected_before_launch():
    space = space_for(SearchSpace.load("default"), "cuda", batch_size=1, assistant="draft", has_flash_attn=True,
                                                        has_flex_attention=True, has_bitsandbytes=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(300):
        candidate = space.suggest(study.ask())
        assert space.contains(candidate)
        reason = space.invalid_reason(candidate)
        if candidate.sdpa_backend != "auto":
            assert candidate.attn_implementation == "sdpa"
        if candidate.quantization == "none":
            assert candidate.llm_int8_threshold is None and candidate.bnb_4bit_compute_dtype == "float32"
        if reason is None:
            assert not (candidate.quantization in ("bnb_8bit", "bnb_4bit") and candidate.compile != "off")
            assert not (candidate.quantization == "int8_weight_only" and candidate.compile == "off")
            assert not (candidate.dtype == "float32" and "flash" in (candidate.attn_implementation, candidate.sdpa_backend))
            assert not (candidate.decode_loop in ("static_loop", "graph_loop")
                        and candidate.cache_implementation == "offloaded_static")
        seen |= {("quantization", candidate.quantization), ("cache", candidate.cache_implementation),
                 ("sdpa", candidate.sdpa_backend), ("pad", candidate.pad_to_multiple_of)}
    assert {("quantization", "bnb_8bit"), ("quantization", "bnb_4bit"), ("cache", "offloaded_static"),
            ("sdpa", "cudnn"), ("pad", 64), ("pad", 16)} <= seen


def test_candidates_enumerates_what_suggest_can_produce():
    space = SearchSpace.from_yaml("""
knobs:
  dtype: {values: [float32, bfloat16]}
  cache_implementation: {values: [dynamic, static]}
  compile: {values: [off, default], when: {cache_implementation: [static]}}
  compile_fullgraph: {values: [false, true], when: {compile: [default]}}
""")
    candidates = list(space.candidates())
    # dtype (auto, float32, bfloat16) x (dynamic | static x (off | default x fullgraph 2))
    assert len(candidates) == 3 * (1 + 1 + 2) == len(set(candidates))
    assert Candidate() in candidates and all(space.contains(c) for c in candidates)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(60):
        assert space.suggest(study.ask()) in candidates


def test_default_space_candidates_honour_the_machine():
    for candidate in cpu_space().candidates():
        assert candidate.dtype != "float16" and candidate.compile in ("off", "default")
        assert candidate.decoding != "assisted"
        assert candidate.compile == "off" or candidate.cache_implementation == "static"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.slow)])  # cuda: 1.6M combinations
def test_valid_candidates_are_the_candidates_no_rule_rejects_and_the_count_is_the_enumeration(device):
    """The walk that stops at a rejected branch gives what filtering every combination gives, in the same order;
    the count of every combination is made without making them."""
    space = space_for(SearchSpace.load("default"), device, batch_size=4, has_bitsandbytes=True, has_triton=True)
    every = list(space.candidates())
    filtered = [c.with_assistant("draft") for c in every if space.invalid_reason(c.with_assistant("draft")) is None]
    assert list(space.valid_candidates("draft")) == filtered and 0 < len(filtered) < len(every)
    assert space.count_candidates() == len(every)
    rules = SearchSpace.from_yaml("knobs:\n  dtype: {values: [float32, bfloat16]}\n"
                                  "  cache_implementation: {values: [dynamic, static]}\n"
                                  "invalid:\n  - if: {dtype: [bfloat16], cache_implementation: [static]}\n"
                                  "    reason: not with bfloat16\n")
    assert [(c.dtype, c.cache_implementation) for c in rules.valid_candidates()] == [
        ("auto", "dynamic"), ("auto", "static"), ("float32", "dynamic"), ("float32", "static"),
        ("bfloat16", "dynamic")]


def test_the_quick_space_builds_in_seconds_and_holds_a_win_on_a_code_model():
    """The quickstart's space: nothing that compiles or quantizes (minutes to build, slower on a CPU), and prompt
    lookup, which pays back on code prompts."""
    quick = SearchSpace.load("quick")
    valid = list(space_for(quick, "cpu").valid_candidates())
    assert all(c.compile == "off" and c.quantization == "none" for c in valid)
    assert any(c.decoding == "prompt_lookup" for c in valid) and Candidate() in valid
