"""`autotune.load_preset`: a preset built as its trial was (weight hints, compile, decode loops, SDPA
backend, flex attention), with and without autotune."""

from __future__ import annotations

import importlib.util
import json

import pytest

from autotune.config.candidate import Candidate
from autotune.config.preset import Preset
from autotune.errors import PresetError
from autotune.runtime.preset_loader import load_preset


HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def preset_of(bundled_model, candidate: Candidate) -> Preset:
    return Preset(model=str(bundled_model), load_kwargs=candidate.load_kwargs(),
                  generation_config={**candidate.generation_kwargs(), "max_new_tokens": 3, "do_sample": False,
                                     "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
                  runtime=candidate.runtime(), measurement={}, environment={})


def prompt(bundled_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_model))("def add(a, b):\n", return_tensors="pt")


@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
def test_quantized_preset_round_trips_and_loads_with_and_without_autotune(tmp_path, bundled_model):
    from transformers import AutoModelForCausalLM, GenerationConfig

    candidate = Candidate(quantization="bnb_4bit", bnb_4bit_compute_dtype="bfloat16", attn_implementation="sdpa",
                          sdpa_backend="math")
    path = preset_of(bundled_model, candidate).write(tmp_path / "p.json")
    p = json.loads(path.read_text())  # plain JSON: what a user without autotune reads
    assert p["load_kwargs"]["quantization_config"]["load_in_4bit"] is True and p["runtime"]["sdpa_backend"] == "math"
    plain = AutoModelForCausalLM.from_pretrained(p["model"], **p["load_kwargs"])
    assert type(plain.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    model, gen = load_preset(path, device="cpu")
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert isinstance(gen, GenerationConfig)
    inputs = prompt(bundled_model)
    assert model.generate(**inputs, generation_config=gen).shape[1] == inputs["input_ids"].shape[1] + 3


def test_load_preset_runs_generate_inside_the_sdpa_backend(tmp_path, bundled_model):
    inputs = prompt(bundled_model)
    math = preset_of(bundled_model, Candidate(attn_implementation="sdpa", sdpa_backend="math")).write(tmp_path / "m.json")
    model, gen = load_preset(math, device="cpu")
    assert model.generate(**inputs, generation_config=gen).shape[1] == inputs["input_ids"].shape[1] + 3
    # CPU has no memory-efficient SDPA kernel: if generate runs inside that backend's context, it must fail
    efficient = preset_of(bundled_model, Candidate(attn_implementation="sdpa", sdpa_backend="efficient"))
    model, gen = load_preset(efficient.write(tmp_path / "e.json"), device="cpu")
    with pytest.raises(RuntimeError, match="No viable backend"):
        model.generate(**inputs, generation_config=gen)
    model(**inputs)  # the forward outside generate is untouched


def test_load_preset_runs_the_static_decode_loop(tmp_path, bundled_model):
    import torch
    from transformers import AutoModelForCausalLM

    candidate = Candidate(dtype="float32", cache_implementation="static", compile="default", decode_loop="static_loop")
    path = preset_of(bundled_model, candidate).write(tmp_path / "loop.json")
    model, gen = load_preset(path, device="cpu")
    assert model.autotune_decode_loop is not None
    inputs = prompt(bundled_model)
    out = model.generate(**inputs, generation_config=gen)
    assert model.autotune_decode_loop.caches  # the loop ran
    plain = AutoModelForCausalLM.from_pretrained(str(bundled_model), dtype=torch.float32)
    assert torch.equal(out, plain.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=0))
    beams = model.generate(**inputs, generation_config=gen, num_beams=2)  # not the loop's: plain generate()
    assert beams.shape[1] == inputs["input_ids"].shape[1] + 3


def test_load_preset_runs_the_graph_loop(tmp_path, bundled_model):
    """A graph-loop preset loads into a model whose generate() runs GraphDecodeLoop (uncaptured on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    from autotune.runtime.decode import GraphDecodeLoop

    candidate = Candidate(dtype="float32", cache_implementation="static", compile="default", decode_loop="graph_loop")
    path = preset_of(bundled_model, candidate).write(tmp_path / "graph.json")
    model, gen = load_preset(path, device="cpu")
    assert isinstance(model.autotune_decode_loop, GraphDecodeLoop)
    inputs = prompt(bundled_model)
    out = model.generate(**inputs, generation_config=gen)
    assert model.autotune_decode_loop.states  # the loop ran
    plain = AutoModelForCausalLM.from_pretrained(str(bundled_model), dtype=torch.float32)
    assert torch.equal(out, plain.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=0))


def test_explicit_compile_runs_the_decode_steps_compiled_and_the_prefill_eager(bundled_model, monkeypatch):
    """compiled_decode_forward: one new token per row goes through torch.compile, a prefill does not
    (transformers 5 allocates the static cache on the first update, which must not happen inside a graph)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autotune.runtime.compiling import compiled_decode_forward

    model = AutoModelForCausalLM.from_pretrained(str(bundled_model), dtype=torch.float32).eval()
    inputs = AutoTokenizer.from_pretrained(str(bundled_model))(["def add(a, b):\n"], return_tensors="pt")
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, cache_implementation="static",
                    disable_compile=True)
    with torch.inference_mode():
        expected = model.generate(**inputs, **settings)

    real_compile, lengths = torch.compile, []

    def spying_compile(fn, **options):
        compiled = real_compile(fn, **options)

        def call(*args, **kwargs):
            lengths.append(kwargs["input_ids"].shape[1])
            return compiled(*args, **kwargs)
        return call

    monkeypatch.setattr(torch, "compile", spying_compile)
    model.forward = compiled_decode_forward(model.forward, "default", True)
    with torch.inference_mode():
        out = model.generate(**inputs, **settings)
    assert out.tolist() == expected.tolist()
    assert lengths == [1] * 5  # the 5 decode steps after the prefill's first token, each compiled


def test_load_preset_quantizes_the_weights_to_int8(tmp_path, bundled_model):
    from autotune.runtime.quant.quantize import Int8WeightOnlyLinear

    candidate = Candidate(dtype="float32", quantization="int8_weight_only", cache_implementation="static",
                          compile="default", decode_loop="static_loop")
    path = preset_of(bundled_model, candidate).write(tmp_path / "int8.json")
    assert json.loads(path.read_text())["runtime"]["weight_quantization"] == "int8"
    model, gen = load_preset(path, device="cpu")
    assert isinstance(model.lm_head, Int8WeightOnlyLinear) and model.autotune_decode_loop is not None
    inputs = prompt(bundled_model)
    assert model.generate(**inputs, generation_config=gen).shape[1] == inputs["input_ids"].shape[1] + 3


def test_load_preset_applies_the_int8_kernel_and_stacked_siblings(tmp_path, bundled_model):
    """The int8_kernel and fuse_projections knobs are runtime hints: `load_preset` builds the model with them (on
    a CPU the Triton kernel cannot run: the torch form computes its products), and a preset with a kernel or
    a fusion it does not know is refused on reading."""
    from autotune.runtime.quant.fusion import SiblingProjection

    candidate = Candidate(dtype="float32", quantization="int8_weight_only", int8_kernel="triton",
                          fuse_projections=True, cache_implementation="static", compile="default",
                          decode_loop="static_loop")
    path = preset_of(bundled_model, candidate).write(tmp_path / "fused.json")
    runtime = json.loads(path.read_text())["runtime"]
    assert runtime["int8_kernel"] == "triton" and runtime["fuse_projections"] is True
    model, gen = load_preset(path, device="cpu")
    assert model.lm_head.kernel == "triton" and model.model.layers[0].self_attn.stacked_q_proj.kernel == "triton"
    assert isinstance(model.model.layers[0].mlp.up_proj, SiblingProjection)
    inputs = prompt(bundled_model)
    assert model.generate(**inputs, generation_config=gen).shape[1] == inputs["input_ids"].shape[1] + 3
    for hint in ({"int8_kernel": "cutlass"}, {"fuse_projections": "qkv"}):
        (tmp_path / "foreign.json").write_text(json.dumps({**json.loads(path.read_text()),
                                                          "runtime": {**runtime, **hint}}))
        with pytest.raises(PresetError, match="export the preset again"):
            Preset.read(tmp_path / "foreign.json")


def test_load_preset_sets_the_inductor_options_of_its_hint_and_refuses_unknown_ones(tmp_path, bundled_model):
    import torch._inductor.config as inductor_config

    candidate = Candidate(cache_implementation="static", compile="default", compile_tuning="coordinate_descent")
    path = preset_of(bundled_model, candidate).write(tmp_path / "tuned.json")
    assert json.loads(path.read_text())["runtime"]["inductor"] == {"coordinate_descent_tuning": True}
    with inductor_config.patch(coordinate_descent_tuning=False):  # Inductor's own way to restore it after
        load_preset(path, device="cpu")
        assert inductor_config.coordinate_descent_tuning is True
    data = json.loads(path.read_text())
    data["runtime"]["inductor"] = {"max_autotune_gemm_backends": "TRITON"}
    (tmp_path / "foreign.json").write_text(json.dumps(data))
    with pytest.raises(PresetError, match="not a map of known Inductor options"):
        load_preset(tmp_path / "foreign.json", device="cpu")
    data["runtime"]["inductor"] = "coordinate_descent_tuning"
    (tmp_path / "foreign.json").write_text(json.dumps(data))
    with pytest.raises(PresetError, match="not a map of known Inductor options"):
        Preset.read(tmp_path / "foreign.json")  # refused on reading, before a model loads


def test_load_preset_fits_flex_attention(tmp_path, bundled_model, monkeypatch):
    """A flex-attention preset loads with the fitted flex attention its trial was measured with
    (autotune.runtime.attention.fit_flex_attention: small blocks for heads wider than 128 on CUDA)."""
    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, "flex_attention",
                        AttentionInterface._global_mapping["flex_attention"])
    path = preset_of(bundled_model, Candidate(attn_implementation="flex_attention")).write(tmp_path / "f.json")
    model, gen = load_preset(path, device="cpu")
    assert model.config._attn_implementation == "flex_attention"
    assert getattr(AttentionInterface._global_mapping["flex_attention"], "autotune_fitted", False)
    inputs = prompt(bundled_model)
    assert model.generate(**inputs, generation_config=gen).shape[1] == inputs["input_ids"].shape[1] + 3
