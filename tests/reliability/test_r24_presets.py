"""R24: a preset is data. A hostile or malformed preset is refused with one line naming the field, before
anything loads: nothing in it can switch on remote code, and no field reaches `from_pretrained` unchecked."""

from __future__ import annotations

import json

import pytest

from autotune.config.preset import Preset
from autotune.errors import PresetError


def good() -> dict:
    return {"format": "autotune-preset/1", "model": "/m",
            "load_kwargs": {"dtype": "bfloat16", "attn_implementation": "sdpa",
                            "quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                    "bnb_4bit_use_double_quant": False,
                                                    "bnb_4bit_compute_dtype": "bfloat16"}},
            "generation_config": {"cache_implementation": "static", "eos_token_id": [1, 2], "max_new_tokens": 8},
            "runtime": {"padding_side": "left", "compile": {"api": "explicit", "mode": "default", "fullgraph": True},
                        "inductor": {"freezing": True}},
            "measurement": {"decode_tokens_per_s": 1.5}, "environment": {"torch": "x"},
            "study": {"name": "s", "trial": 1}, "note": None}


def edited(path: list, value) -> dict:
    data = good()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


HOSTILE = [
    (["load_kwargs", "trust_remote_code"], True, "load_kwargs.trust_remote_code"),
    (["load_kwargs", "code_revision"], "main", "load_kwargs.code_revision"),
    (["load_kwargs", "revision"], "evil", "load_kwargs.revision"),
    (["load_kwargs", "quantization_config", "trust_remote_code"], True, "trust_remote_code"),
    (["generation_config", "trust_remote_code"], True, "generation_config.trust_remote_code"),
    (["generation_config", "custom_generate"], "evil/repo", "generation_config.custom_generate"),
    (["measurement", "nested"], {"auto_map": {"AutoModel": "x.Y"}}, "auto_map"),
    (["runtime", "module"], "os.system", "runtime.module"),
]
MALFORMED = [
    (["load_kwargs"], "float32", "load_kwargs"),
    (["load_kwargs", "dtype"], "float64", "load_kwargs.dtype"),
    (["load_kwargs", "dtype"], 3, "load_kwargs.dtype"),
    (["load_kwargs", "quantization_config"], {"bnb_4bit_quant_type": "nf4"}, "quantization_config"),
    (["load_kwargs", "quantization_config", "load_in_4bit"], "yes", "load_in_4bit"),
    (["load_kwargs", "device_map"], "disk:/tmp", "device_map"),
    (["generation_config"], ["static"], "generation_config"),
    (["generation_config", "watermarking_config"], {"a": 1}, "generation_config.watermarking_config"),
    (["runtime", "compile"], {"api": "explicit", "mode": "fastest", "fullgraph": True}, "runtime.compile.mode"),
    (["runtime", "compile"], "default", "runtime.compile"),
    (["runtime", "decode_loop"], {"kind": "static", "mode": "default", "fullgraph": True, "steps": -1},
     "runtime.decode_loop.steps"),
    (["runtime", "decode_loop"], {"kind": "graph", "mode": "default", "fullgraph": True}, "lacks steps"),
    (["runtime", "compile"], {"api": "explicit", "fullgraph": True}, "runtime.compile lacks mode"),
    (["runtime", "pad_to_multiple_of"], True, "runtime.pad_to_multiple_of"),
    (["runtime", "inductor"], {"freezing": "yes"}, "inductor"),
    (["runtime", "assistant_model"], 5, "runtime.assistant_model"),
    (["model"], ["m"], "model"),
    (["model"], "", "model"),
    (["note"], 3, "note"),
    (["study"], "s", "study"),
]


@pytest.mark.parametrize("path,value,field", HOSTILE + MALFORMED)
def test_r24_preset_fields_are_checked_as_data(path, value, field):
    with pytest.raises(PresetError) as refused:
        Preset.from_json(json.dumps(edited(path, value), default=repr))
    message = str(refused.value)
    assert field in message and "\n" not in message and "export the preset again" in message


def test_r24_a_valid_preset_passes_and_round_trips():
    preset = Preset.from_json(json.dumps(good()))
    assert Preset.from_json(preset.to_json()) == preset


def test_r24_load_preset_refuses_remote_code_before_loading(tmp_path, monkeypatch):
    """The model is never loaded: from_pretrained is replaced by a trap."""
    import transformers

    from autotune import load_preset

    def trap(*args, **kwargs):
        raise AssertionError("from_pretrained was called for a hostile preset")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", trap)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(edited(["load_kwargs", "trust_remote_code"], True)))
    with pytest.raises(PresetError, match="trust_remote_code"):
        load_preset(path, device="cpu")


def test_r24_a_huge_or_multiline_value_still_makes_one_short_line():
    with pytest.raises(PresetError) as refused:
        Preset.from_json(json.dumps(edited(["load_kwargs", "dtype"], "x\n" * 100_000)))
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


def test_r24_values_that_are_not_json_are_refused():
    data = good()
    data["measurement"] = {"f": object()}
    with pytest.raises(PresetError, match="measurement.f holds object"):
        Preset(**data)


def test_r24_preset_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b'{"model": "\xff\xfe"}')
    with pytest.raises(PresetError, match="not UTF-8"):
        Preset.read(path)


def test_r24_every_configuration_of_the_default_space_exports_a_preset_the_schema_takes():
    from itertools import islice

    from autotune.config.space import SearchSpace

    count = 0
    for candidate in islice(SearchSpace.load("default").valid_candidates(assistant="/models/draft"), 20000):
        Preset(model="/m", load_kwargs=candidate.load_kwargs(), generation_config=candidate.generation_kwargs(),
               runtime=candidate.runtime(), measurement={"candidate": candidate.to_dict()}, environment={})
        count += 1
    assert count > 100
