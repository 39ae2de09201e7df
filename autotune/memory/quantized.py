"""Weight bytes of a model as bitsandbytes stores it (8-bit LLM.int8, 4-bit nf4/fp4 with or without double
quantization), as torchao stores it (int8, int4, float8), and of a model in its own dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autotune.errors import InputError
from autotune.memory.inventory import DTYPE_BYTES, ParameterInventory

# bitsandbytes 4-bit: weights are quantized in blocks of 64 with a float32 absmax per block (bnb 0.50
# default); double quantization stores absmax as uint8 with a float32 absmax per 256 blocks. The 4-bit
# code book is 16 float32, the second-level code book 256 float32. int8 (LLM.int8) keeps a float32 scale
# per output row (SCB). Checked against real bitsandbytes 0.50.2 loading on CPU (tests/test_memory.py).
BNB_4BIT_BLOCKSIZE = 64
BNB_DOUBLE_QUANT_BLOCKSIZE = 256

# torchao 0.18: int8 and float8 keep a float32 scale per output row (Int8Tensor, Float8Tensor; float8 with
# dynamic activations a single one by default, counted per row all the same); int4 (tile-packed for tinygemm)
# packs two values per byte with a bfloat16 scale and zero point per group of TORCHAO_INT4_GROUP inputs, and
# leaves a linear whose width the group does not divide unquantized. Checked against real torchao on CPU
# (int8, float8; tests/memory/test_torchao_bytes.py).
TORCHAO_INT4_GROUP = 128
TORCHAO_SCHEMES = {"torchao_int8_weight_only": "ao_int8", "torchao_int4_weight_only": "ao_int4",
                   "torchao_float8_weight_only": "ao_float8", "torchao_float8_dynamic": "ao_float8"}

QUANTIZATION_SCHEMES = ("int8", "nf4", "fp4", "ao_int8", "ao_int4", "ao_float8")


@dataclass(frozen=True)
class Quantization:
    scheme: str  # int8, nf4 or fp4
    double_quant: bool = False

    def __post_init__(self):
        if self.scheme not in QUANTIZATION_SCHEMES:
            raise InputError(f"unknown quantization {self.scheme!r}; one of {QUANTIZATION_SCHEMES}")

    def describe(self) -> str:
        return self.scheme + ("+dq" if self.double_quant else "")


def quantization_of(candidate) -> Quantization | None:
    """The candidate's quantization applied as the model loads (`Candidate.quantization`: bnb_8bit, bnb_4bit
    with `bnb_4bit_quant_type` nf4/fp4 and `bnb_4bit_use_double_quant`, or a torchao value), or None."""
    value = getattr(candidate, "quantization", "none")
    if value in TORCHAO_SCHEMES:
        return Quantization(TORCHAO_SCHEMES[value])
    if value == "bnb_8bit":
        return Quantization("int8", False)
    if value == "bnb_4bit":
        return Quantization(candidate.bnb_4bit_quant_type, bool(candidate.bnb_4bit_use_double_quant))
    return None


def quantized_linear_bytes(numel: int, out_features: int, q: Quantization, dtype_bytes: int = 2) -> int:
    """Bytes of one nn.Linear weight as bitsandbytes or torchao stores it (bias not included); `dtype_bytes`
    is the model dtype's size (a linear torchao's int4 leaves alone stays in it)."""
    if q.scheme == "ao_int4":
        in_features = numel // out_features
        if in_features % TORCHAO_INT4_GROUP:
            return numel * dtype_bytes
        return numel // 2 + (in_features // TORCHAO_INT4_GROUP) * out_features * 2 * 2
    if q.scheme in ("int8", "ao_int8", "ao_float8"):
        return numel + 4 * out_features  # int8 weight + float32 scale per output row (SCB)
    blocks = math.ceil(numel / BNB_4BIT_BLOCKSIZE)
    packed = math.ceil(numel / 2) + 16 * 4  # two 4-bit values per byte + the 16-entry float32 code book
    if not q.double_quant:
        return packed + 4 * blocks
    outer = math.ceil(blocks / BNB_DOUBLE_QUANT_BLOCKSIZE)
    return packed + blocks + 4 * outer + 256 * 4 + 4  # uint8 absmax, float32 outer absmax, code book, offset


def weight_bytes(inventory: ParameterInventory, dtype: str, quantization: Quantization | None = None) -> int:
    """Bytes of the loaded model: parameters in `dtype` (quantized linears as bitsandbytes stores them)
    plus buffers."""
    size = DTYPE_BYTES[dtype]
    if quantization is None:
        params = inventory.parameters * size
    else:
        params = inventory.other_params * size + sum(quantized_linear_bytes(n, out, quantization, size)
                                                     for n, out in inventory.linears)
    return params + inventory.buffer_bytes()
