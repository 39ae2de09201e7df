"""Fault injection for tests of the tuner's fault handling.

A Job may name a fault; it takes effect only when the worker's environment has
`AUTOTUNE_ALLOW_FAULTS=1`, which the test suite sets and no user configuration reaches.
"""

from __future__ import annotations

import os
import signal
import time

FAULTS = ("oom", "hang", "kill", "exit", "cuda_error", "error")


def inject(fault: str | None) -> None:
    if not fault or os.environ.get("AUTOTUNE_ALLOW_FAULTS") != "1":
        return
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
    if fault == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)")
    if fault == "hang":
        while True:
            time.sleep(3600)
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "exit":
        os._exit(139)
    if fault == "cuda_error":
        raise RuntimeError("CUDA error: device-side assert triggered (injected fault)")
    raise RuntimeError("injected worker error")
