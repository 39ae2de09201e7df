"""The runtime hints' vocabulary: names and limits that the candidate (which writes the hints) and the runtime
(which applies them) share, and the checks of the hints a preset carries.

It imports nothing but the standard library, so the configuration layer reads it without torch, and an
exported model folder ships it with the generation code (autotune.runtime.shipping).
"""

from __future__ import annotations

# decode steps per CUDA graph in the graph loop (one replay and one look at the finished rows per chunk)
GRAPH_STEPS = 16
# the decode-step products of weight-only int8: Inductor's reductions, or the Triton kernel (int8_gemv)
INT8_KERNELS = ("inductor", "triton")
# The most rows (batch x new tokens) a decode step's product takes as a matrix-vector product: through the
# Triton int8 kernel (int8_gemv.MAX_ROWS), and stacked siblings (fusion); more run as matrix products
DECODE_PRODUCT_ROWS = 8
# Weights a prefill of weight-only int8 dequantizes at a time (quantize): 16 Mi, 64 MiB in float32, then a
# copy in the model's dtype (the memory model counts them)
INT8_PREFILL_CHUNK_ELEMENTS = 1 << 24
# the attention implementations a preset may load with (autotune's `attn_implementation` knob, but "auto")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")
# Inductor options a preset's `runtime.inductor` may set: nothing else of torch's configuration is touched.
INDUCTOR_OPTIONS = ("coordinate_descent_tuning", "freezing")


def check_inductor_hint(hint) -> None:
    """An `inductor` hint names Inductor options this autotune sets (INDUCTOR_OPTIONS), each to true or false
    (a preset is data); ValueError otherwise."""
    if hint is None:
        return
    if not isinstance(hint, dict) or set(hint) - set(INDUCTOR_OPTIONS) or \
            not all(isinstance(value, bool) for value in hint.values()):
        raise ValueError(f"runtime.inductor {hint!r} is not a map of known Inductor options to true/false "
                         f"(known: {sorted(INDUCTOR_OPTIONS)})")


def check_weight_hints(runtime: dict) -> None:
    """`int8_kernel` names a kernel of weight-only int8 (`INT8_KERNELS`) and `fuse_projections` is true or
    false; ValueError otherwise."""
    kernel = runtime.get("int8_kernel", "inductor")
    if kernel not in INT8_KERNELS:
        raise ValueError(f"runtime.int8_kernel {kernel!r} is not one of {', '.join(INT8_KERNELS)}")
    fuse = runtime.get("fuse_projections", False)
    if not isinstance(fuse, bool):
        raise ValueError(f"runtime.fuse_projections {fuse!r} is not true or false")


# The preset inside an exported model folder: what the folder's generation code reads its hints from, and
# what `autotune verify` re-measures.
PRESET_IN_FOLDER = "autotune_preset.json"
