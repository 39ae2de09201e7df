"""Workers started ahead of their trials: the start-up (spawn, imports of torch and transformers, the CUDA
context) happens beside the trials in flight instead of on a trial's own clock.

Where trials run side by side (autotune.tuner.pipeline) the pool keeps `size` worker processes started, each
waiting for one job on its stdin (`python -m autotune.worker --prestarted DEVICE LOG`). A launch hands its job to
one of them and the pool starts the next. Each trial still runs in a process of its own that ends with it: a
pre-started worker runs exactly one job, and nothing of one trial is left in another's process.

A pool worker is registered with the measurement lease from its start, so it is paused, like every other
worker, while one measures. It is started with the environment of the launch that asked for it; a launch with
another environment (variables Inductor reads at import) gets a worker spawned for it instead. The workers left
waiting when the study ends or stops are killed with their process groups; they also die with the orchestrator
(PR_SET_PDEATHSIG, as every worker) and leave when their stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autotune.worker.launcher import KILL_GRACE_S, Started, kill_group, spawn

PRESTART_ARGUMENT = "--prestarted"


class WarmPool:
    """Worker processes started ahead of the launches that will use them (see the module's docstring)."""

    def __init__(self, size: int, device: str, directory: str | Path, lease=None):
        """
        Args:
            size: how many started workers to keep waiting.
            device: the device their CUDA context is made for ("cuda"; "cpu" makes none).
            directory: where a waiting worker's output goes until its job names its own log.
            lease: autotune.tuner.lease.Lease the workers are registered with, or None.
        """
        self.size, self.device, self.lease = size, device, lease
        self.directory = Path(directory).resolve()
        self.lock = threading.Lock()
        # Every worker is forked by this one thread, which lives until the pool closes: a worker dies with the
        # thread that forked it (PR_SET_PDEATHSIG follows the parent thread, not the process), and a slot's
        # thread that ends while a worker it started runs another slot's trial would kill that trial.
        self.spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prestart-spawner")
        self.waiting: list[tuple[dict, Started, Path]] = []
        self.count = 0
        self.closed = False

    def hand_over(self, env: dict, job_path: Path, result_path: Path, log_path: Path) -> Started | None:
        """Give a job to a waiting worker started with `env`, and start the next one.

        Args:
            env: the variables the launch would give a worker it spawned.
            job_path, result_path, log_path: the job's files (its log: where the worker's output goes from now).

        Returns:
            The worker now running the job, or None where none was waiting with `env` (the caller spawns one).
        """
        with self.lock:
            if self.closed:
                return None
            ready = None
            while self.waiting and ready is None:
                started_env, worker, prestart_log = self.waiting.pop(0)
                if started_env == env and worker.proc.poll() is None and self.give(worker, job_path, result_path,
                                                                                   log_path):
                    ready = worker
                else:
                    self.discard(worker, prestart_log)
            self.fill(env)
            return ready

    def start(self, env: dict, count: int | None = None) -> None:
        """Start workers with `env` now, ahead of the first launch.

        Args:
            env: the variables the launches will give a worker.
            count: how many to start now, where more than `size` (the first launches come at once: one per
                slot); hand-overs start the next ones only while fewer than `size` wait.
        """
        with self.lock:
            if not self.closed:
                self.fill(env, max(self.size, count or 0))

    def give(self, worker: Started, job_path: Path, result_path: Path, log_path: Path) -> bool:
        """Write the job to the worker's stdin; False where it is gone meanwhile."""
        line = json.dumps({"job": str(job_path), "result": str(result_path), "log": str(log_path)}) + "\n"
        try:
            worker.proc.stdin.write(line.encode("utf-8"))
            worker.proc.stdin.close()
        except OSError:
            return False
        if self.lease is not None:
            worker.held_back_before = self.lease.held_back(worker.proc.pid)
        return True

    def fill(self, env: dict, target: int | None = None) -> None:
        """Start workers with `env` until `target` (`size` unless given) wait (called with the lock held)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        while len(self.waiting) < (target or self.size):
            self.count += 1
            prestart_log = self.directory / f"prestarted-{self.count:05d}.log"
            with open(prestart_log, "wb") as log:
                worker = self.spawner.submit(spawn, [PRESTART_ARGUMENT, self.device, str(prestart_log)], log, env,
                                             self.lease, stdin=subprocess.PIPE).result()
            self.waiting.append((env, worker, prestart_log))

    def discard(self, worker: Started, prestart_log: Path) -> None:
        """End a waiting worker and what it started; forget it."""
        kill_group(worker.proc)
        try:
            worker.proc.stdin.close()
        except OSError:
            pass
        if self.lease is not None:
            self.lease.unregister(worker.proc.pid)
        if worker.served is not None:
            worker.served.join(timeout=KILL_GRACE_S)
        prestart_log.unlink(missing_ok=True)

    def close(self) -> None:
        """End every waiting worker; later launches spawn their own."""
        with self.lock:
            self.closed = True
            waiting, self.waiting = self.waiting, []
        for _, worker, prestart_log in waiting:
            self.discard(worker, prestart_log)
        self.spawner.shutdown(wait=True)  # its end would kill a worker still running a job: none is by now

    def waiting_pids(self) -> list[int]:
        """The pids of the workers waiting now (for tests and progress)."""
        with self.lock:
            return [worker.proc.pid for _, worker, _ in self.waiting]


def wait_for_job(device: str, prestart_log: str) -> tuple[str, str, float]:
    """The worker's side: start up (imports, the CUDA context), then wait for the job on stdin and send this
    process's output to the job's log from then on.

    Args:
        device: the device to make the CUDA context for ("cpu": none).
        prestart_log: where the output went until now (copied to the head of the job's log, then removed).

    Returns:
        The job's and its result's paths, and the time.perf_counter() at which the job came. Exits the process
        where stdin closes without a job (the pool closed).
    """
    import os
    import sys

    try:  # what fails here fails again, reported, once the job runs
        from autotune.runtime import environment
        from autotune.worker import trial  # noqa: F401 - torch, transformers and the build path

        environment.describe(device)
    except Exception:  # noqa: BLE001
        pass
    line = sys.stdin.readline()
    came = time.perf_counter()
    if not line.strip():
        os._exit(0)
    handed = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    log = Path(handed["log"])
    try:
        log.write_bytes(Path(prestart_log).read_bytes())
    except OSError:
        log.write_bytes(b"")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    Path(prestart_log).unlink(missing_ok=True)
    return handed["job"], handed["result"], came
