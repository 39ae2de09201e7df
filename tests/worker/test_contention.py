"""autotune.worker.contention without a GPU: where the list of the GPU's processes comes from."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from autotune.worker import contention


class FakeNVML:
    """The part of nvidia-ml-py the check uses, over a made-up driver."""

    def __init__(self, processes: dict[bytes, list[int]], fail_init: bool = False):
        self.processes, self.fail_init, self.inits = processes, fail_init, 0

    def nvmlInit(self):
        self.inits += 1
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        assert isinstance(uuid, bytes)
        return uuid

    def nvmlDeviceGetCount(self):
        return len(self.processes)

    def nvmlDeviceGetHandleByIndex(self, i):
        return list(self.processes)[i]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=1) for pid in self.processes[handle]]


@pytest.fixture
def driver(monkeypatch):
    def install(fake: FakeNVML | None, smi_output: str | None = None):
        contention.nvml_started.cache_clear()
        monkeypatch.setitem(sys.modules, "pynvml", fake)  # None: "not installed"
        monkeypatch.setattr(contention, "gpu_uuid", lambda: "GPU-aaa")
        calls = []

        def run(cmd, **kwargs):
            calls.append(cmd)
            return subprocess.CompletedProcess(cmd, 0, stdout=smi_output or "", stderr="")

        monkeypatch.setattr(contention.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
        monkeypatch.setattr(contention.subprocess, "run", run)
        return calls
    return install


def test_nvml_lists_the_other_processes_of_this_gpu_without_running_nvidia_smi(driver):
    fake = FakeNVML({b"GPU-aaa": [os.getpid(), 4242], b"GPU-bbb": [777]})
    calls = driver(fake)
    assert contention.foreign_pids() == {4242}
    assert contention.foreign_pids() == {4242}
    assert calls == [] and fake.inits == 1  # initialised once per process


def test_without_nvml_nvidia_smi_is_asked(driver):
    smi = f"GPU-aaa, {os.getpid()}\nGPU-aaa, 4242\nGPU-bbb, 777\n"
    for fake in (None, FakeNVML({}, fail_init=True)):
        calls = driver(fake, smi)
        assert contention.foreign_pids() == {4242}
        assert len(calls) == 1 and calls[0][0] == "nvidia-smi"


def test_a_watch_flags_a_process_that_appears_during_the_measurement(driver):
    processes = {b"GPU-aaa": [os.getpid()]}
    driver(FakeNVML(processes))
    with contention.ContentionWatch(interval=0.01) as watch:
        assert watch.reason is None
        processes[b"GPU-aaa"].append(31337)
    assert watch.reason is not None and "31337" in watch.reason
