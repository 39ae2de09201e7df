"""Weight bytes of a model as bitsandbytes stores it (8-bit LLM.int8, 4-bit nf4/fp4 with or without double
quantization), and of a model in its own dtype."""

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

QUANTIZATION_SCHEMES = ("int8", "nf4", "fp4")


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
    """The candidate's bitsandbytes quantization (`Candidate.quantization`: none, bnb_8bit, bnb_4bit with
    `bnb_4bit_quant_type` nf4/fp4 and `bnb_4bit_use_double_quant`), or None."""
    value = getattr(candidate, "quantization", "none")
    if value == "bnb_8bit":
        return Quantization("int8", False)
    if value == "bnb_4bit":
        return Quantization(candidate.bnb_4bit_quant_type, bool(candidate.bnb_4bit_use_double_quant))
    return None


def quantized_linear_bytes(numel: int, out_features: int, q: Quantization) -> int:
    """Bytes of one nn.Linear weight as bitsandbytes stores it (bias not included)."""
    if q.scheme == "int8":
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
        params = inventory.other_params * size + sum(quantized_linear_bytes(n, out, quantization)
                                                     for n, out in inventory.linears)
    return params + inventory.buffer_bytes()
