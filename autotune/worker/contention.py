"""Is another process using this trial's GPU? A measurement taken while the GPU is shared is not valid.

Two signals, checked before and after the measured passes (R22 of ../shared/RELIABILITY.md):
- the compute processes NVIDIA's driver lists on this GPU (`nvidia-smi --query-compute-apps`), other
  than this worker (inside a container the driver may list none, hence the second signal);
- memory in use on the device that this process did not allocate, grown by more than a threshold since
  the worker started (`torch.cuda.mem_get_info` minus what torch has reserved).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import torch

FOREIGN_MEMORY_THRESHOLD = 512 * 2**20  # more than this much memory of someone else appearing = contended


def gpu_uuid() -> str | None:
    uuid = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def foreign_pids() -> set[int]:
    """PIDs of other compute processes on this GPU, as the driver lists them (empty if it cannot say)."""
    if shutil.which("nvidia-smi") is None:
        return set()
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    mine, uuid = {os.getpid(), os.getppid()}, gpu_uuid()
    pids = set()
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[1].isdigit() and (uuid is None or parts[0] == uuid):
            pids.add(int(parts[1]))
    return pids - mine


def foreign_bytes() -> int:
    """Device memory in use that this process's allocator does not hold (others, plus our CUDA context)."""
    free, total = torch.cuda.mem_get_info()
    return (total - free) - torch.cuda.memory_reserved()


class ContentionWatch:
    """Watches the GPU from a thread while the measured passes run (a context manager); `reason` says
    why the measurement is not valid, or is None. Enter it once the worker's CUDA context exists."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.reason: str | None = None
        self.bytes_at_start = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True, name="contention-watch")

    def look(self) -> None:
        pids = foreign_pids()
        if pids:
            self.reason = self.reason or f"other processes used this GPU during the measurement (pids {sorted(pids)})"
        grown = foreign_bytes() - self.bytes_at_start
        if grown > FOREIGN_MEMORY_THRESHOLD:
            self.reason = self.reason or (f"{grown / 2**30:.1f} GiB of device memory was taken by another "
                                          "process during the measurement")

    def watch(self) -> None:
        while not self.stop.wait(self.interval):
            self.look()

    def __enter__(self) -> "ContentionWatch":
        self.bytes_at_start = foreign_bytes()
        self.look()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.look()
