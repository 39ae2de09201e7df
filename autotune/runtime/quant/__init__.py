"""Weight hints: weight-only int8 (`quantize`, with the Triton kernel of `int8_gemv`) and stacked sibling
projections (`fusion`), applied to a loaded model in that order."""

from __future__ import annotations

from autotune.config.preset import check_weight_hints


def apply_weight_hints(model, runtime: dict) -> None:
    """Apply the hints that change a loaded model's weights, in order: `weight_quantization` with its
    `int8_kernel`, then `fuse_projections`. A model loaded by plain transformers from a preset gets what
    `autotune.load_preset` gives it this way.

    Args:
        model: a loaded transformers model.
        runtime: a preset's (or a candidate's) runtime hints.
    """
    from autotune.runtime.quant import fusion, quantize

    check_weight_hints(runtime)
    quantize.apply_weight_quantization(model, runtime.get("weight_quantization"), runtime.get("int8_kernel"))
    if runtime.get("fuse_projections", False):
        fusion.fuse_siblings(model)
