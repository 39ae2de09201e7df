"""Is another process using this trial's GPU? A measurement taken while the GPU is shared is not valid.

The signal is the list of compute processes NVIDIA's driver reports on this GPU
(`nvidia-smi --query-compute-apps`), other than this worker, polled through the measured passes (R22 of
../shared/RELIABILITY.md; optimum-benchmark isolates its benchmarks the same way). Device memory is not
used as a signal: on the H200 a worker's own memory outside torch's allocator (CUDA context, cuBLAS and
compile workspaces, CUDA graphs) grew by 2.2 GiB during one flex_attention trial, which a memory
threshold mistook for another process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import torch

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


class ContentionWatch:
    """Watches the GPU from a thread while the measured passes run (a context manager); `reason` says
    why the measurement is not valid, or is None. Enter it once the worker's CUDA context exists."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.reason: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True, name="contention-watch")

    def look(self) -> None:
        pids = foreign_pids()
        if pids and self.reason is None:
            self.reason = f"other processes used this GPU during the measurement (pids {sorted(pids)})"

    def watch(self) -> None:
        while not self.stop.wait(self.interval):
            self.look()

    def __enter__(self) -> "ContentionWatch":
        self.look()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.look()
