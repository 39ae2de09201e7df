"""Weight hints: weight-only int8 (`quantize`, with the Triton kernel of `int8_gemv`) and stacked sibling
projections (`fusion`), applied to a loaded model in that order by `apply_weight_hints` (`weights`)."""

from autotune.runtime.quant.weights import apply_weight_hints

__all__ = ["apply_weight_hints"]
