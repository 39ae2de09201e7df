"""Helpers for the fault tests (../shared/RELIABILITY.md): a small, quick study driven through the CLI.

Imported as `faultkit` (a name of its own: tests/ and tests/reliability/ are both on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "codelm-4m"
DATA = ROOT / "tests" / "data"
FAULT_ENV = {"AUTOTUNE_ALLOW_FAULTS": "1"}


def search_command(trials: int, *extra: str, study: str = "r", command: tuple = ("search",)) -> list[str]:
    return [sys.executable, "-m", "autotune.cli", *command, "--model", str(MODEL), "--device", "cpu",
            "--study", study, "--trials", str(trials), "--space", str(DATA / "small_space.yaml"),
            "--prompts", str(DATA / "one_prompt.jsonl"), "--max-new-tokens", "4", "--repeats", "1",
            "--warmup", "0", "--confirm", "0", "--heartbeat-interval", "1", "--grace-period", "3", *extra]


def create_command(storage: str, trials: int, *extra: str) -> list[str]:
    """`autotune study create` of the quick study, on `storage`."""
    return search_command(trials, "--storage", storage, *extra, command=("study", "create"))


def worker_command(storage: str, *extra: str, study: str = "r") -> list[str]:
    return [sys.executable, "-m", "autotune.cli", "worker", "--study", study, "--storage", storage, *extra]


def start_all(commands: list[list[str]], workdir: Path, faults: str = "") -> list[subprocess.Popen]:
    """Start processes in the same moment; their output is collected by `finish_all`."""
    return [subprocess.Popen(c, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=environment(faults)) for c in commands]


def finish_all(procs: list[subprocess.Popen], timeout: float = 900) -> list[tuple[int, str]]:
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(p.returncode, output) for p, output in zip(procs, outputs)]


def environment(faults: str = "", **extra) -> dict:
    return {**os.environ, **FAULT_ENV, "AUTOTUNE_TEST_FAULTS": faults, **extra}


def run_search(workdir: Path, trials: int, *extra: str, faults: str = "", timeout: float = 900,
               env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(search_command(trials, *extra), cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env={**environment(faults), **(env or {})})


def start_search(workdir: Path, trials: int, *extra: str, faults: str = "") -> subprocess.Popen:
    return subprocess.Popen(search_command(trials, *extra), cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment(faults))


def load(workdir: Path, study: str = "r") -> optuna.Study:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{workdir}/studies/{study}.db")


def wait_for(condition, timeout: float = 300, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # e.g. the study's database is not there yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def worker_processes(workdir: Path) -> list[psutil.Process]:
    """Worker processes of studies under `workdir` (found by their job file's path)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "autotune.worker" in cmdline and any(str(workdir) in part for part in cmdline):
            found.append(proc)
    return found


def running_trial_worker(workdir: Path, number: int) -> psutil.Process:
    """Wait until trial `number`'s worker runs, and return it (the launcher writes its pid in the job folder: a
    worker started ahead of its trial has no job path on its command line)."""
    pid_file = workdir / "studies" / "r" / "trials" / f"{number:05d}" / "PID"

    def running():
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return None
        return next((p for p in worker_processes(workdir) if p.pid == pid), None)

    return wait_for(running)


def attrs(trial) -> dict:
    return trial.user_attrs
