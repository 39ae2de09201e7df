"""torchao's values of the quantization knob: the plain dict a candidate gives is torchao's own config as
transformers reads it, the preset schema takes that shape (and the full `TorchAoConfig.to_dict()`) and nothing
else, and each machine keeps only the formats it runs."""

from __future__ import annotations

import json

import pytest
from support import space_for

from autotune.config.candidate import TORCHAO_QUANTIZATIONS, Candidate
from autotune.config.preset import Preset
from autotune.config.space import SearchSpace
from autotune.errors import PresetError


def torchao_truth(value: str):
    """The torchao config object each value stands for, written with torchao's own classes."""
    from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig,
                                      Int4WeightOnlyConfig, Int8WeightOnlyConfig)
    from torchao.quantization.quantize_.workflows import Int4PackingFormat

    return {"torchao_int8_weight_only": Int8WeightOnlyConfig(),
            "torchao_int4_weight_only": Int4WeightOnlyConfig(
                group_size=128, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D),
            "torchao_float8_weight_only": Float8WeightOnlyConfig(),
            "torchao_float8_dynamic": Float8DynamicActivationFloat8WeightConfig()}[value]


@pytest.mark.parametrize("value", TORCHAO_QUANTIZATIONS)
def test_the_candidates_dict_reads_back_as_torchaos_own_config(value):
    pytest.importorskip("torchao")
    from transformers import TorchAoConfig
    from transformers.quantizers.auto import AutoQuantizationConfig

    plain = Candidate(quantization=value).load_kwargs()["quantization_config"]
    assert json.loads(json.dumps(plain)) == plain  # JSON-plain
    truth = TorchAoConfig(torchao_truth(value)).to_dict()
    assert TorchAoConfig.from_dict(plain).to_dict() == truth
    read = AutoQuantizationConfig.from_dict(plain)  # the path of from_pretrained(quantization_config=dict)
    assert isinstance(read, TorchAoConfig) and read.to_dict() == truth


def preset_with(quantization_config) -> str:
    return json.dumps({"format": "autotune-preset/1", "model": "/m",
                       "load_kwargs": {"dtype": "bfloat16", "quantization_config": quantization_config},
                       "generation_config": {}, "runtime": {"padding_side": "left"}, "measurement": {},
                       "environment": {}, "study": {}, "note": None})


@pytest.mark.parametrize("value", TORCHAO_QUANTIZATIONS)
def test_the_schema_takes_the_candidates_dict_and_torchaos_full_one(value):
    pytest.importorskip("torchao")
    from transformers import TorchAoConfig

    for config in (Candidate(quantization=value).quantization_config(), TorchAoConfig(torchao_truth(value)).to_dict()):
        assert Preset.from_json(preset_with(config)).load_kwargs["quantization_config"] == config


def encoded(data: dict, name: str = "Int4WeightOnlyConfig") -> dict:
    return {"quant_method": "torchao", "quant_type": {"default": {"_type": name, "_version": 2, "_data": data}}}


REFUSED = [
    (encoded({}, "os.system"), "quant_type.default._type"),
    (encoded({}, "Int8DynamicActivationIntxWeightConfig"), "quant_type.default._type"),
    (encoded({"int4_packing_format": {"_type": "torch.dtype", "_data": "load"}}), "int4_packing_format._data"),
    (encoded({"int4_packing_format": {"_type": "Int4PackingFormat", "_data": "__class__"}}), "int4_packing_format"),
    (encoded({"int4_packing_format": {"_type": "subprocess.Popen", "_data": {}}}), "int4_packing_format._type"),
    (encoded({"granularity": {"dim": -1}}), "granularity lacks _type"),
    (encoded({"group_size": {"_type": "PerRow", "_data": {"x": [[1]]}}}), "x[0]"),
    (encoded({"Group-Size": 1}), "Group-Size"),
    (encoded({"trust_remote_code": True}), "trust_remote_code"),
    ({**encoded({}), "quant_type": {"default": encoded({})["quant_type"]["default"], "other": {}}}, "quant_type"),
    ({**encoded({}), "quant_method": "torchao", "revision": "x"}, "quantization_config.revision"),
    ({**encoded({}), "modules_to_not_convert": [3]}, "modules_to_not_convert[]"),
    ({"quant_method": "torchao"}, "lacks quant_type"),
]


@pytest.mark.parametrize("config,field", REFUSED)
def test_the_schema_refuses_any_other_torchao_shape_with_one_line_naming_the_field(config, field):
    with pytest.raises(PresetError) as refused:
        Preset.from_json(preset_with(config))
    message = str(refused.value)
    assert field in message and "\n" not in message and "load_kwargs.quantization_config" in message


def quantization_values(device: str, **machine) -> tuple:
    space = space_for(SearchSpace.load("default"), device, **machine)
    return next(k for k in space.knobs if k.name == "quantization").values, {
        value: why for knob, value, why in space.left_out if knob == "quantization"}


def test_each_machine_keeps_the_torchao_formats_it_runs():
    kept, why = quantization_values("cpu")
    assert not set(TORCHAO_QUANTIZATIONS) & set(kept) and "torchao is not installed" in why["torchao_int8_weight_only"]
    kept, why = quantization_values("cpu", has_torchao=True)
    assert "torchao_int8_weight_only" in kept
    assert "compute capability 8.9" in why["torchao_float8_weight_only"] and "tinygemm" in why["torchao_int4_weight_only"]
    kept, why = quantization_values("cuda", has_torchao=True, has_bf16=True)
    assert "torchao_int4_weight_only" in kept and "torchao_float8_dynamic" in why
    kept, _ = quantization_values("cuda", has_torchao=True, has_bf16=True, has_float8=True)
    assert set(TORCHAO_QUANTIZATIONS) <= set(kept)


def test_torchao_candidates_build_with_from_pretrained_alone():
    space = SearchSpace.load("default")
    int4 = Candidate(quantization="torchao_int4_weight_only")
    assert "bfloat16 only" in space.invalid_reason(int4)
    assert space.invalid_reason(Candidate(dtype="bfloat16", quantization="torchao_int4_weight_only")) is None
    fused = Candidate(quantization="torchao_int8_weight_only", fuse_projections=True, int8_kernel="triton",
                      compile_tuning="coordinate_descent")
    assert fused.runtime() == {"padding_side": "left"}  # no weight hint: from_pretrained quantizes
    assert fused.effective() == Candidate(quantization="torchao_int8_weight_only")
    assert fused.describe() == "quant=torchao_int8_weight_only"


def test_coordinate_descent_is_no_separate_candidate_with_torchao_which_switches_it_on_itself():
    tuned = Candidate(quantization="torchao_int8_weight_only", cache_implementation="static", compile="default",
                      compile_tuning="coordinate_descent")
    assert tuned.key() == Candidate(quantization="torchao_int8_weight_only", cache_implementation="static",
                                    compile="default").key()
    assert Candidate(cache_implementation="static", compile="default", compile_tuning="coordinate_descent").key() \
        != Candidate(cache_implementation="static", compile="default").key()
