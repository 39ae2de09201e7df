"""What a worker's exception says about its configuration: (status, failure_kind) of the Measurement.

Infeasible statuses (`oom`, `unsupported`) are data for the sampler: the configuration fails the same way
every time. `error` (with `cuda_error`) is an accident of the run, retried.
"""

from __future__ import annotations

# Errors of torch.compile that belong to the configuration, not to the run (float32 flex_attention under
# max-autotune raises InductorError / LoweringException / NoValidChoicesError on an H200).
COMPILE_ERRORS = ("InductorError", "LoweringException", "NoValidChoicesError", "BackendCompilerFailed")


def classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception to a (status, failure_kind) pair."""
    import torch

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return "oom", "oom"
    if "CUDA error" in text or "device-side assert" in text or "illegal memory access" in text:
        return "error", "cuda_error"
    if "No viable backend for scaled_dot_product_attention" in text or "No available kernel" in text:
        # the chosen SDPA backend cannot run these inputs (dtype, mask, head size): a property of the
        # configuration, data for the sampler (both messages come from torch's SDPA dispatch)
        return "unsupported", "unsupported"
    if any(name in text for name in COMPILE_ERRORS):
        # torch.compile cannot build this configuration (an Inductor lowering with no kernel choice, a graph
        # that cannot be captured): it fails the same way every time, so it is infeasible, not retried
        return "unsupported", "compile_error"
    if "accessing tensor output of CUDAGraphs that has been overwritten" in text:
        return "unsupported", "cudagraph_overwritten"
    if isinstance(exc, (NotImplementedError,)) or "not supported" in text.lower() or "unsupported" in text.lower():
        return "unsupported", "unsupported"
    return "error", "error"
