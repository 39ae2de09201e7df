"""The preset format: a JSON round trip, an atomic write, and a one-line error for a preset that cannot be read."""

from __future__ import annotations

import json

import pytest

from autotune.config.preset import FORMAT, Preset
from autotune.errors import PresetError


def sample() -> Preset:
    return Preset(model="/m", load_kwargs={"dtype": "bfloat16"}, generation_config={"cache_implementation": "static"},
                  runtime={"padding_side": "left"}, measurement={"decode_tokens_per_s": 1.5},
                  environment={"torch": "x"}, study={"name": "s", "trial": 1})


def test_json_round_trip_and_atomic_write(tmp_path):
    p = sample()
    assert Preset.from_json(p.to_json()) == p
    path = p.write(tmp_path / "p.json")
    assert Preset.read(path) == p
    assert [f.name for f in tmp_path.iterdir()] == ["p.json"]  # no temporary file left


def test_preset_from_another_version_is_refused(tmp_path):
    data = json.loads(sample().to_json())
    data["format"] = "autotune-preset/99"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match="export it again"):
        Preset.read(path)
    assert FORMAT in str(pytest.raises(PresetError, Preset.read, path).value)


@pytest.mark.parametrize("text,message", [("{", "not valid JSON"), ("[]", "JSON object"), ('{"model": "m"}', "lacks")])
def test_broken_presets(tmp_path, text, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PresetError, match=message):
        Preset.read(path)


def test_missing_preset(tmp_path):
    with pytest.raises(PresetError, match="does not exist"):
        Preset.read(tmp_path / "none.json")
