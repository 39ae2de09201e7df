"""Fault injection for tests of the tuner's fault handling.

A Job may name a fault; it takes effect only when the worker's environment has
`AUTOTUNE_ALLOW_FAULTS=1`, which the test suite sets and no user configuration reaches. The CLI reads
which trials get which fault from `AUTOTUNE_TEST_FAULTS`: comma-separated `SELECTOR:FAULT` items where
SELECTOR is a trial number (`3:hang`), a knob value (`pad_to_multiple_of=8:kill`, every trial of that
configuration) or `confirm` (`confirm:slowgen`, every confirmation run of the best; no other selector reaches
those).
"""

from __future__ import annotations

import os
import signal
import time

FAULTS = ("oom", "hang", "kill", "exit", "segfault", "cuda_error", "error",
          "slowN (sleep N seconds, then run normally)",
          "slowgen (every decoding step of every generate call takes 0.5 s longer: a hopeless configuration)",
          # real CUDA faults, on a GPU only:
          "cuda_oom (allocate more than the card has)", "cuda_assert (a device-side assert: an embedding index "
          "out of range)", "cuda_hang (a kernel that spins for hours, then a synchronize)")


def allowed() -> bool:
    return os.environ.get("AUTOTUNE_ALLOW_FAULTS") == "1"


def prescreen_disabled() -> bool:
    """`AUTOTUNE_TEST_NO_PRESCREEN=1` (with faults allowed): launch candidates estimated over the --vram
    budget instead of recording them as over_budget, so that a real CUDA out-of-memory error under the
    worker's memory cap can be shown (benchmarks/reliability_gpu.py, R1 from the workload)."""
    return allowed() and os.environ.get("AUTOTUNE_TEST_NO_PRESCREEN") == "1"


def inject(fault: str | None) -> None:
    if not fault or not allowed():
        return
    if fault == "slowgen":
        return  # applied to the built model: slow_generation
    if fault.startswith("slow"):
        time.sleep(float(fault[4:] or 30))
        return
    if fault.startswith("cuda_") and fault != "cuda_error":
        real_cuda_fault(fault)
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
    if fault == "segfault":  # a native crash, as a compiled kernel or an extension makes one
        import faulthandler

        faulthandler._sigsegv()
    if fault == "cuda_error":
        raise RuntimeError("CUDA error: device-side assert triggered (injected fault)")
    raise RuntimeError("injected worker error")


def real_cuda_fault(fault: str) -> None:
    import torch

    if fault == "cuda_oom":
        free, total = torch.cuda.mem_get_info()
        torch.empty(total + 2**30, dtype=torch.uint8, device="cuda")
    elif fault == "cuda_assert":
        weight = torch.zeros(8, 4, device="cuda")
        torch.nn.functional.embedding(torch.tensor([10**6], device="cuda"), weight)
        torch.cuda.synchronize()
    elif fault == "cuda_hang":
        torch.cuda._sleep(2**62)  # spins on the GPU far longer than any timeout
        torch.cuda.synchronize()
    else:
        raise ValueError(f"unknown CUDA fault {fault!r}")


def parse_spec(spec: str) -> list[tuple[str, str]]:
    """`"1:oom,pad_to_multiple_of=8:kill"` -> [("1", "oom"), ("pad_to_multiple_of=8", "kill")]."""
    items = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        selector, _, fault = item.rpartition(":")
        items.append((selector, fault))
    return items


def fault_for(spec: list[tuple[str, str]], number: int, candidate, confirmation: bool = False) -> str | None:
    for selector, fault in spec:
        if (selector == "confirm") != confirmation:  # confirmation runs answer to `confirm` alone, and only they do
            continue
        if confirmation:
            return fault
        if "=" in selector:
            knob, _, value = selector.partition("=")
            if str(getattr(candidate, knob, None)) == value:
                return fault
        elif selector == str(number):
            return fault
    return None


class SlowStreamer:
    """Passes every decoding step's tokens on to `streamer` STEP_DELAY_S late."""

    STEP_DELAY_S = 0.5

    def __init__(self, streamer):
        self.streamer = streamer
        self.prompt_seen = False

    def put(self, value):
        if self.prompt_seen:
            time.sleep(self.STEP_DELAY_S)
        self.prompt_seen = True
        self.streamer.put(value)

    def end(self):
        self.streamer.end()


def slow_generation(built, fault: str | None) -> None:
    """The `slowgen` fault: the built candidate generates as it should, but each step is late."""
    if fault != "slowgen" or not allowed():
        return
    generate = built.generate

    def slow_generate(inputs, streamer=None):
        return generate(inputs, streamer=SlowStreamer(streamer) if streamer is not None else None)

    built.generate = slow_generate
