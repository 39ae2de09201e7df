"""How a worker's exception becomes a (status, failure_kind): the configuration's own failures are
infeasible (data for the sampler), accidents of the run are transient (retried)."""

from __future__ import annotations

import pytest
import torch

from autotune.worker.classify import classify


class InductorError(RuntimeError):
    pass


@pytest.mark.parametrize("exc, expected", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), ("oom", "oom")),
    (RuntimeError("No available kernel. Aborting execution."), ("unsupported", "unsupported")),
    # messages seen on the H200 (transformers 5.17, torch 2.11)
    (InductorError("LoweringException: NoValidChoicesError: No choices to select. Provided reason: No choices "
                   "exist for backend."), ("unsupported", "compile_error")),
    (RuntimeError("Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run."),
     ("unsupported", "cudagraph_overwritten")),
    (RuntimeError("CUDA error: device-side assert triggered"), ("error", "cuda_error")),
    (ValueError("something else went wrong"), ("error", "error")),
])
def test_classify(exc, expected):
    assert classify(exc) == expected
