"""autotune.memory.quantized for torchao's formats: the bytes it counts are the bytes torchao stores (CPU: int8 and
float8 weight-only; int4 packs for CUDA only, so its formula is checked on a layer's arithmetic)."""

from __future__ import annotations

import pytest

from autotune.config.candidate import Candidate
from autotune.memory.inventory import load_config, parameter_inventory
from autotune.memory.quantized import Quantization, quantization_of, quantized_linear_bytes, weight_bytes


def stored_bytes(model) -> int:
    """Bytes of every parameter and buffer, a torchao tensor counted by the tensors it holds."""
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        parts = [getattr(tensor, name) for name in getattr(tensor, "tensor_data_names", ())] or [tensor]
        total += sum(part.numel() * part.element_size() for part in parts)
    return total


@pytest.mark.parametrize("value", ["torchao_int8_weight_only", "torchao_float8_weight_only"])
def test_torchao_weights_are_counted_as_torchao_stores_them(fixture_models, value):
    pytest.importorskip("torchao")
    from transformers import AutoModelForCausalLM

    path = fixture_models / "codelm-12m"
    candidate = Candidate(dtype="bfloat16", quantization=value)
    model = AutoModelForCausalLM.from_pretrained(path, **candidate.load_kwargs())
    assert type(model.model.layers[0].mlp.up_proj.weight).__name__ in ("Int8Tensor", "Float8Tensor")
    inventory = parameter_inventory(load_config(str(path)))
    assert weight_bytes(inventory, "bfloat16", quantization_of(candidate)) == stored_bytes(model)


def test_int4_packs_two_weights_a_byte_with_a_scale_and_zero_per_group_and_skips_odd_widths():
    assert quantization_of(Candidate(quantization="torchao_int4_weight_only")) == Quantization("ao_int4")
    assert quantization_of(Candidate(quantization="torchao_float8_dynamic")) == Quantization("ao_float8")
    q = Quantization("ao_int4")
    assert quantized_linear_bytes(256 * 384, 384, q) == 256 * 384 // 2 + 2 * 384 * 4
    assert quantized_linear_bytes(200 * 384, 384, q, dtype_bytes=2) == 200 * 384 * 2
