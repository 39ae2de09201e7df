"""An exported model folder (autotune.runtime.folder) runs as its preset was measured, with plain transformers,
in a process that never imports autotune."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import BUNDLED_MODEL, FOLDER_NEW_TOKENS, PLAIN_TRANSFORMERS, run_plain, tokens_as_built

from autotune.config.candidate import Candidate
from autotune.config.preset import Preset
from autotune.runtime.folder import export_folder
from autotune.runtime.hints import PRESET_IN_FOLDER
from autotune.runtime.shipping import SHIPPED, shipped_source


def preset_of(candidate: Candidate, **generation) -> Preset:
    """A preset of `candidate` on the bundled model, as export writes one."""
    return Preset(model=str(BUNDLED_MODEL), load_kwargs=candidate.load_kwargs(),
                  generation_config={"do_sample": False, "max_new_tokens": FOLDER_NEW_TOKENS, "pad_token_id": 0,
                                     "eos_token_id": 1, "bos_token_id": 2, **candidate.generation_kwargs(),
                                     **generation},
                  runtime=candidate.runtime(), measurement={"candidate": candidate.to_dict()}, environment={})


def test_every_shipped_module_imports_only_shipped_modules():
    files = set(SHIPPED.values())
    for module in SHIPPED:
        source = shipped_source(module)
        assert "from autotune" not in source and "import autotune" not in source, module
        for line in source.splitlines():
            if line.strip().startswith("from ."):
                assert f"{line.split()[1][1:]}.py" in files, (module, line)


INT8_EAGER = Candidate(dtype="float32", attn_implementation="sdpa", sdpa_backend="math",
                       quantization="int8_weight_only", fuse_projections=True)


def test_folder_runs_autotunes_int8_without_autotune(tmp_path):
    preset = preset_of(INT8_EAGER)
    folder = export_folder(preset, tmp_path / "tuned")
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", PRESET_IN_FOLDER,
            "README.md"} <= {p.name for p in folder.iterdir()}
    assert (folder / "custom_generate" / "generate.py").is_file()
    assert Preset.read(folder / PRESET_IN_FOLDER) == preset
    expected = tokens_as_built(preset)
    for how in ("load", "call"):
        ran = run_plain(folder, how)
        assert ran["tokens"] == expected, how
        assert ran["down_proj"] == "Int8WeightOnlyLinear" and ran["attention"] == "sdpa", ran


def test_reexport_keeps_the_weights_unless_they_change(tmp_path):
    folder = export_folder(preset_of(INT8_EAGER), tmp_path / "tuned")
    weights = (folder / "model.safetensors").read_bytes()
    export_folder(preset_of(INT8_EAGER, max_new_tokens=7), folder)
    assert (folder / "model.safetensors").read_bytes() == weights
    assert json.loads((folder / "generation_config.json").read_text())["max_new_tokens"] == 7
    export_folder(preset_of(Candidate(dtype="bfloat16")), folder)
    assert len((folder / "model.safetensors").read_bytes()) < 0.6 * len(weights)  # float32 -> bfloat16
    assert not list(tmp_path.glob(".tuned.*"))


@pytest.mark.parametrize("field, value, message", [
    ("runtime", {"inductor": {"cpp.cxx": "rm -rf /"}}, "is not a map of known Inductor options"),
    ("load_kwargs", {"attn_implementation": "kernels-community/anything"}, "is not one of eager"),
])
def test_a_tampered_folder_preset_is_refused_before_anything_runs(tmp_path, field, value, message):
    folder = export_folder(preset_of(INT8_EAGER), tmp_path / "tuned")
    data = json.loads((folder / PRESET_IN_FOLDER).read_text())
    data[field].update(value)
    (folder / PRESET_IN_FOLDER).write_text(json.dumps(data))
    run = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(folder), "load"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode != 0 and message in run.stderr


@pytest.mark.slow
def test_folder_runs_the_compiled_decode_loop_without_autotune(tmp_path):
    candidate = Candidate(quantization="int8_weight_only", fuse_projections=True, cache_implementation="static",
                          compile="default", decode_loop="static_loop")
    preset = preset_of(candidate, max_cache_len=64)
    folder = export_folder(preset, tmp_path / "looped")
    ran = run_plain(folder)
    assert ran["loop"] and ran["tokens"] == tokens_as_built(preset)


@pytest.mark.slow
def test_a_torchao_folder_loads_quantized_and_generates_as_built(tmp_path):
    """torchao's int8 is saved quantized: plain transformers loads the folder with torchao's tensors."""
    pytest.importorskip("torchao")
    candidate = Candidate(dtype="float32", quantization="torchao_int8_weight_only")
    preset = preset_of(candidate)
    folder = export_folder(preset, tmp_path / "ao")
    assert json.loads((folder / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
    ran = run_plain(folder)
    assert ran["down_proj"] == "Linear" and ran["tokens"] == tokens_as_built(preset)


def test_load_preset_takes_an_exported_folder(tmp_path):
    import autotune

    folder = export_folder(preset_of(INT8_EAGER), tmp_path / "tuned")
    model, gen = autotune.load_preset(folder, device="cpu")
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "Int8WeightOnlyLinear"
    assert gen.max_new_tokens == FOLDER_NEW_TOKENS
