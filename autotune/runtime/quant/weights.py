"""Weight hints applied to a loaded model: weight-only int8 (`quantize`, with the Triton kernel of `int8_gemv`),
then stacked sibling projections (`fusion`)."""

from __future__ import annotations

from autotune.runtime.hints import check_weight_hints
from autotune.runtime.quant.fusion import fuse_siblings
from autotune.runtime.quant.quantize import apply_weight_quantization


def apply_weight_hints(model, runtime: dict) -> None:
    """Apply the hints that change a loaded model's weights, in order: `weight_quantization` with its
    `int8_kernel`, then `fuse_projections`. A model loaded by plain transformers from a preset gets what
    `autotune.load_preset` gives it this way.

    Args:
        model: a loaded transformers model.
        runtime: a preset's (or a candidate's) runtime hints.
    """
    check_weight_hints(runtime)
    apply_weight_quantization(model, runtime.get("weight_quantization"), runtime.get("int8_kernel"))
    if runtime.get("fuse_projections", False):
        fuse_siblings(model)
