from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from autotune.config.candidate import GRAPH_STEPS, Candidate
from autotune.errors import CandidateError


def test_defaults_are_the_baseline():
    c = Candidate()
    assert c.load_kwargs() == {} and c.generation_kwargs() == {} and c.runtime() == {"padding_side": "left"}
    assert c.describe() == "baseline"


def test_json_round_trip():
    c = Candidate(dtype="bfloat16", cache_implementation="static", compile="default", compile_fullgraph=True,
                  pad_to_multiple_of=8)
    assert Candidate.from_json(c.to_json()) == c


def test_three_parts():
    c = Candidate(dtype="float32", attn_implementation="sdpa", cache_implementation="static", compile="default",
                  compile_api="explicit")
    assert c.load_kwargs() == {"dtype": "float32", "attn_implementation": "sdpa"}
    assert c.generation_kwargs() == {"cache_implementation": "static", "disable_compile": True}
    assert c.runtime()["compile"] == {"api": "explicit", "mode": "default", "fullgraph": False}
    GenerationConfig(**c.generation_kwargs())  # plain transformers accepts it


def test_prompt_lookup_and_assisted_fields():
    assert Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=5).generation_kwargs() == \
        {"prompt_lookup_num_tokens": 5}
    c = Candidate(decoding="assisted", num_assistant_tokens=5, assistant="some/model")
    assert c.generation_kwargs() == {"num_assistant_tokens": 5, "num_assistant_tokens_schedule": "constant"}
    assert c.runtime()["assistant_model"] == "some/model"


@pytest.mark.parametrize("field,value", [("dtype", "float8"), ("compile", "fast"), ("pad_to_multiple_of", 0),
                                         ("pad_to_multiple_of", True), ("compile_fullgraph", "yes")])
def test_values_outside_a_knob_are_refused(field, value):
    with pytest.raises(CandidateError, match=field):
        Candidate(**{field: value})


def test_unknown_field_in_json():
    with pytest.raises(CandidateError, match="unknown candidate field"):
        Candidate.from_dict({"turbo": True})


def test_effective_configuration_ignores_knobs_without_effect():
    a = Candidate(compile="off", compile_fullgraph=True)
    b = Candidate()
    assert a != b and a.key() == b.key()
    assert Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=3).key() != \
        Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=5).key()


def test_bitsandbytes_load_kwargs_are_plain_json_and_a_valid_config():
    from transformers import BitsAndBytesConfig

    eight = Candidate(quantization="bnb_8bit", llm_int8_threshold=4)
    assert eight.load_kwargs() == {"quantization_config": {"load_in_8bit": True, "llm_int8_threshold": 4.0}}
    four = Candidate(dtype="bfloat16", quantization="bnb_4bit", bnb_4bit_quant_type="fp4",
                     bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="bfloat16")
    kwargs = four.load_kwargs()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["quantization_config"] == {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4",
                                             "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16"}
    config = BitsAndBytesConfig(**kwargs["quantization_config"])  # the documented one-line conversion
    assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert BitsAndBytesConfig(**eight.quantization_config()).llm_int8_threshold == 4.0


def test_sdpa_backend_is_a_runtime_hint_only_with_sdpa():
    assert Candidate(attn_implementation="sdpa", sdpa_backend="math").runtime()["sdpa_backend"] == "math"
    assert "sdpa_backend" not in Candidate(attn_implementation="eager", sdpa_backend="math").runtime()
    assert Candidate(attn_implementation="eager", sdpa_backend="math").key() == Candidate(attn_implementation="eager").key()


def test_a_static_cache_without_compile_is_not_compiled_by_generate():
    # transformers 5 compiles a static-cache forward inside generate() by itself (on CUDA): "off" must mean off
    for cache in ("static", "offloaded_static"):
        assert Candidate(cache_implementation=cache).generation_kwargs() == {"cache_implementation": cache,
                                                                             "disable_compile": True}
    generate_compiled = Candidate(cache_implementation="static", compile="default", compile_api="generate")
    assert "disable_compile" not in generate_compiled.generation_kwargs()
    assert generate_compiled.runtime()["compile"] == {"api": "generate", "mode": "default", "fullgraph": False}


def test_knobs_without_effect_do_not_make_another_configuration():
    assert Candidate(llm_int8_threshold=4.0).key() == Candidate().key()
    assert Candidate(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True).key() == Candidate().key()
    assert Candidate(quantization="bnb_4bit", bnb_4bit_quant_type="fp4").key() != Candidate(quantization="bnb_4bit").key()
    assert Candidate(quantization="bnb_4bit").describe() == "quant=bnb_4bit"


@pytest.mark.parametrize("field,value", [("llm_int8_threshold", -1), ("llm_int8_threshold", "high"),
                                         ("quantization", "gptq"), ("sdpa_backend", "triton"),
                                         ("cache_implementation", "quantized")])
def test_new_knob_domains(field, value):
    with pytest.raises(CandidateError, match=field):
        Candidate(**{field: value})


def test_decode_loop_is_a_runtime_hint_only_with_a_static_cache_and_a_compile_mode():
    loop = Candidate(cache_implementation="static", compile="reduce-overhead", compile_fullgraph=True,
                     decode_loop="static_loop", compile_api="generate")
    assert loop.runtime()["decode_loop"] == {"kind": "static", "mode": "reduce-overhead", "fullgraph": True,
                                             "offloading": False}
    assert "compile" not in loop.runtime()  # the loop compiles its own step, nothing else is compiled
    assert loop.generation_kwargs() == {"cache_implementation": "static"}  # plain transformers: generate's compile
    assert loop.key() == Candidate(**{**loop.to_dict(), "compile_api": "explicit"}).key()  # the API plays no part
    assert "loop=static_loop" in loop.describe()
    no_compile = Candidate(cache_implementation="static", decode_loop="static_loop")
    assert "decode_loop" not in no_compile.runtime() and no_compile.key() == Candidate(cache_implementation="static").key()
    offloaded = Candidate(cache_implementation="offloaded_static", compile="default", decode_loop="static_loop")
    assert offloaded.runtime()["decode_loop"]["offloading"] is True


def test_graph_loop_is_the_static_loop_with_steps_per_cuda_graph():
    graph = Candidate(cache_implementation="static", compile="reduce-overhead", compile_fullgraph=True,
                      decode_loop="graph_loop")
    assert graph.runtime()["decode_loop"] == {"kind": "graph", "mode": "reduce-overhead", "fullgraph": True,
                                              "offloading": False, "steps": GRAPH_STEPS}
    # the loop captures its own graphs, so reduce-overhead compiles the step as the default mode does
    assert graph.key() == Candidate(**{**graph.to_dict(), "compile": "default"}).key()
    assert graph.key() != Candidate(**{**graph.to_dict(), "decode_loop": "static_loop"}).key()
    assert "loop=graph_loop" in graph.describe() and Candidate.from_json(graph.to_json()) == graph
    tuned = Candidate(**{**graph.to_dict(), "compile": "max-autotune"})
    assert tuned.key() != graph.key() and tuned.runtime()["decode_loop"]["mode"] == "max-autotune"


def test_coordinate_descent_is_an_inductor_hint_only_with_a_compile_mode_that_lacks_it():
    tuned = Candidate(cache_implementation="static", compile="reduce-overhead", decode_loop="static_loop",
                      compile_tuning="coordinate_descent")
    assert tuned.runtime()["inductor"] == {"coordinate_descent_tuning": True}
    assert "tuning=coordinate_descent" in tuned.describe()
    assert tuned.key() != Candidate(**{**tuned.to_dict(), "compile_tuning": "default"}).key()
    uncompiled = Candidate(cache_implementation="static", compile_tuning="coordinate_descent")
    assert "inductor" not in uncompiled.runtime() and uncompiled.key() == Candidate(cache_implementation="static").key()
    assert Candidate.from_json(tuned.to_json()) == tuned
    # max-autotune tunes by coordinate descent already: the knob adds nothing there
    autotuned = Candidate(cache_implementation="static", compile="max-autotune", compile_tuning="coordinate_descent")
    assert "inductor" not in autotuned.runtime()
    assert autotuned.key() == Candidate(cache_implementation="static", compile="max-autotune").key()


def test_keys_of_configurations_recorded_before_compile_tuning_existed_are_unchanged():
    # the keys 260855b (before the knob) gave: a resumed study still finds its baseline and duplicates
    assert Candidate().key() == "bb13e87143e3a92f"
    assert Candidate(cache_implementation="static", compile="default").key() == "05d809ab8d59e24b"


def test_freezing_is_an_inductor_hint_with_a_compile_mode():
    frozen = Candidate(cache_implementation="static", compile="max-autotune", compile_freezing=True)
    assert frozen.runtime()["inductor"] == {"freezing": True}
    both = Candidate(cache_implementation="static", compile="default", compile_freezing=True,
                     compile_tuning="coordinate_descent")
    assert both.runtime()["inductor"] == {"coordinate_descent_tuning": True, "freezing": True}
    assert "freezing=True" in frozen.describe() and frozen.key() != Candidate(**{**frozen.to_dict(),
                                                                                "compile_freezing": False}).key()
    uncompiled = Candidate(cache_implementation="static", compile_freezing=True)
    assert "inductor" not in uncompiled.runtime() and uncompiled.key() == Candidate(cache_implementation="static").key()
