"""Is another process using this trial's GPU? A measurement taken while the GPU is shared is not valid.

The signal is the list of compute processes NVIDIA's driver reports on this GPU (through NVML in this
process where nvidia-ml-py is installed, else `nvidia-smi --query-compute-apps`), other than this worker,
polled through the measured passes (R22 of
../shared/RELIABILITY.md; optimum-benchmark isolates its benchmarks the same way). A process that is stopped
(SIGSTOP: the workers a pipelined study pauses while another measures, autotune.tuner.lease) holds its
CUDA context but runs nothing on the device, so it is not counted. Device memory is not
used as a signal: a worker's own memory outside torch's allocator (CUDA context, cuBLAS and compile
workspaces, CUDA graphs) grows by gigabytes in some trials (float32 flex_attention), which a memory threshold
mistakes for another process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading

import torch

from autotune.worker.lease import is_stopped


@functools.cache  # one device per worker: asked once, not at every poll
def gpu_uuid() -> str | None:
    uuid = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def foreign_pids() -> set[int]:
    """PIDs of other compute processes on this GPU that are not stopped, as the driver lists them (empty if it
    cannot say)."""
    uuid = gpu_uuid()
    pids = nvml_pids(uuid)
    if pids is None:
        pids = nvidia_smi_pids(uuid)
    return {pid for pid in pids - {os.getpid(), os.getppid()} if not is_stopped(pid)}



def nvml_pids(uuid: str | None) -> set[int] | None:
    """The driver's list through NVML in this process (nvidia-ml-py), None where NVML cannot be used. The
    first choice: a query of a few microseconds, where running `nvidia-smi` every second starts a process
    beside a measurement that may be bound by the host."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        if not nvml_started(pynvml):
            return None
        handles = ([pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())] if uuid else
                   [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())])
        return {p.pid for h in handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
    except Exception:  # pynvml.NVMLError and its many subclasses: fall back to nvidia-smi
        return None


@functools.cache
def nvml_started(pynvml) -> bool:
    """nvmlInit once per process; False where it fails (no driver, no GPU)."""
    try:
        pynvml.nvmlInit()
        return True
    except Exception:
        return False


def nvidia_smi_pids(uuid: str | None) -> set[int]:
    if shutil.which("nvidia-smi") is None:
        return set()
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    pids = set()
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[1].isdigit() and (uuid is None or parts[0] == uuid):
            pids.add(int(parts[1]))
    return pids


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
