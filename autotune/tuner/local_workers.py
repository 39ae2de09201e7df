"""Several workers on this host: `autotune search --gpus 0,1,...` starts one `autotune worker` per device
(each sees one device through CUDA_VISIBLE_DEVICES) and watches them. With a journal file there are no
heartbeats, so a worker that dies has its running trial failed and retried by the parent, and is restarted;
trials left running by workers of this host that are gone are failed before the workers start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune.config.settings import SearchSettings
from autotune.errors import InputError, WorkerExitError
from autotune.interrupt import pause
from autotune.tuner.coordination import WORKER_ATTR
from autotune.tuner.handle import StudyHandle
from autotune.tuner.records import Records
from autotune.tuner.shared import boot_id
from autotune.tuner.storage import is_journal, is_shareable, storage_for
from autotune.tuner.trials import budget_used

CONFIG_EXIT_CODES = (2, 3, 4, 5)  # a worker that stopped for these would stop again: not restarted


def process_gone(who: dict) -> bool:
    """Whether the worker `who` (a trial's WORKER_ATTR) of this host runs no more: this host has booted
    since, or its pid is this process's, or no process has it, or the process that has it is no autotune
    worker (a fresh machine reuses the pids of the one it replaced). Another host's worker is not judged."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return False
    now = boot_id()
    if who.get("boot") and now and who["boot"] != now:
        return True
    try:
        pid = int(who["pid"])
        if pid == os.getpid():
            return True
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError, OverflowError):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # no /proc (not Linux): alive, as far as can be told
        return False
    return not (b"autotune.cli" in command and b"worker" in command)


def parse_gpus(text: str) -> tuple[str, ...]:
    gpus = tuple(part.strip() for part in text.split(",") if part.strip())
    if not gpus or len(set(gpus)) != len(gpus) or not all(g.isdigit() for g in gpus):
        raise InputError(f"--gpus takes distinct device indices separated by commas (0,1,2,3), got {text!r}")
    return gpus


def shared_storage_url(storage: str | None, root: str, study_name: str, workers: int) -> str:
    """Where the workers of `search --gpus` meet: the given PostgreSQL URL (or journal file), by default a
    journal file beside the study's folder. SQLite is refused for more than one worker."""
    url = storage or str(Path(root) / f"{study_name}.log")
    if workers > 1 and not is_shareable(url):
        raise InputError(f"{workers} workers cannot share the SQLite storage {url}: SQLite is not made for "
                         "parallel optimization (Optuna's own advice). Give a PostgreSQL URL "
                         "(--storage postgresql://user:password@host/db), or leave --storage out for a "
                         f"journal file ({Path(root) / (study_name + '.log')}) that workers on this host share")
    return url


@dataclass
class LocalWorker:
    gpu: str
    proc: subprocess.Popen
    restarts: int = 0


def worker_command(study_name: str, storage_url: str, root: str, gpu: str) -> list[str]:
    return [sys.executable, "-m", "autotune.cli", "worker", "--study", study_name, "--storage", storage_url,
            "--root", root, "--gpu", gpu]


def start_worker(study_name: str, storage_url: str, root: str, gpu: str,
                 report: Callable[..., None]) -> subprocess.Popen:
    """One worker process; its output comes back line by line as `worker_line` events."""
    proc = subprocess.Popen(worker_command(study_name, storage_url, root, gpu), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def forward():
        for line in proc.stdout:
            report("worker_line", gpu=gpu, line=line.rstrip("\n"))

    threading.Thread(target=forward, daemon=True, name=f"worker-{gpu}-output").start()
    report("worker_started", gpu=gpu, pid=proc.pid)
    return proc


def fail_trials_of(handle: StudyHandle, pid: int, max_retry: int) -> list[int]:
    """Fail the RUNNING trials of a worker process of this host that died, and enqueue their retries (what
    heartbeats do on RDB storage; a journal file has none)."""
    host = socket.gethostname()
    return fail_running_trials(handle, lambda who: who.get("host") == host and who.get("pid") == pid, max_retry)


def fail_orphaned_trials(handle: StudyHandle, max_retry: int) -> list[int]:
    """Before workers start on a journal file (no heartbeats): fail and retry the RUNNING trials whose worker
    of this host is gone, with the parent that watched it (the machine was taken back mid-study: a worker that
    drew such a trial's configuration would wait for it). RDB storage has heartbeats for this, and other
    hosts' workers are theirs to judge."""
    return fail_running_trials(handle, process_gone, max_retry)


def fail_running_trials(handle: StudyHandle, whose: Callable[[dict], bool], max_retry: int) -> list[int]:
    """Fail the RUNNING trials whose worker (WORKER_ATTR) `whose` accepts, and enqueue their retries."""
    failed = []
    for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get(WORKER_ATTR)
        if who and whose(who) and handle.fail(t.number, "worker_died"):  # it may have ended meanwhile
            handle.retry(t.number, max_retry)
            failed.append(t.number)
    return failed


def open_shared(settings: SearchSettings, report: Callable[..., None]) -> StudyHandle:
    """The study the local workers share. On a journal file, results written but never told are recorded
    first, then what gone workers of this host left running is failed and retried."""
    storage = storage_for(settings.storage_url, heartbeat_interval=None)
    handle = StudyHandle.of(optuna.load_study(study_name=settings.study_name, storage=storage), storage)
    if is_journal(settings.storage_url):
        Records.of_settings(handle, settings, report).reconcile()
        orphans = fail_orphaned_trials(handle, settings.max_retry)
        if orphans:
            report("orphans_failed", failed=orphans)
    return handle


def run_local_workers(settings: SearchSettings, gpus: tuple[str, ...], report: Callable[..., None],
                      max_restarts: int = 2) -> None:
    """Start one worker per device on the study (made already), watch them until all have stopped. A worker
    that died has its trial failed and retried and is restarted (at most `max_restarts` times); one that
    stopped for its input or a systemic failure is not. Raises WorkerExitError if any stopped that way."""
    handle = open_shared(settings, report)
    url, study_name, root = settings.storage_url, settings.study_name, settings.root
    workers = [LocalWorker(gpu, start_worker(study_name, url, root, gpu, report)) for gpu in gpus]
    stopped: dict[str, int] = {}
    try:
        while len(stopped) < len(workers):
            for w in workers:
                code = w.proc.poll()
                if code is None or w.gpu in stopped:
                    continue
                failed = fail_trials_of(handle, w.proc.pid, settings.max_retry)
                report("worker_stopped", gpu=w.gpu, code=code, failed=failed)
                if code not in (0, *CONFIG_EXIT_CODES) and unfinished(handle.study, settings.trials) \
                        and w.restarts < max_restarts:
                    w.proc, w.restarts = start_worker(study_name, url, root, w.gpu, report), w.restarts + 1
                else:
                    stopped[w.gpu] = code
            pause(0.2)
    except BaseException:  # Ctrl-C, SIGTERM: the workers stop too (they mark their trials failed)
        stop_workers(workers)
        raise
    bad = {gpu: code for gpu, code in stopped.items() if code != 0}
    if bad:
        code = next((c for c in bad.values() if c in CONFIG_EXIT_CODES), 1)
        stops = ", ".join(f"gpu {g}: exit {c}" for g, c in bad.items())
        raise WorkerExitError(f"worker(s) stopped with an error: {stops}; their output is above. Rerun the same "
                              "command to resume the study", code)


def unfinished(study: optuna.Study, trials: int) -> bool:
    """Whether the study still has trials to run: fewer than its budget started, or some waiting."""
    started = budget_used(study.get_trials(deepcopy=False))
    return started < trials or bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def stop_workers(workers: list[LocalWorker], grace_s: float = 30.0) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
