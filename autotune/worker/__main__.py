"""Entry point of a worker process: `python -m autotune.worker JOB.json RESULT.json`, or, started ahead of its
trial, `python -m autotune.worker --prestarted DEVICE LOG`, which starts up and then reads its one job's paths on
stdin (autotune.worker.prestart).

Runs build -> warm -> measure -> compare for one Job and writes a Measurement to RESULT.json. Whatever
goes wrong becomes a Measurement with a status and a traceback; nothing is raised across the process
boundary. The process exits on its own if its parent (the orchestrator) dies.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from autotune.config.measurement import Measurement
from autotune.files import write_atomic
from autotune.worker.job import Job
from autotune.worker.launcher import FAULT_LOG, PARENT_VARIABLE
from autotune.worker.prestart import PRESTART_ARGUMENT, wait_for_job


def exit_with_parent(interval: float = 0.5) -> None:
    """Leave when the orchestrator is gone (killed with -9, say), so no worker outlives its study.

    On Linux the kernel does it: PR_SET_PDEATHSIG sends SIGKILL the moment the parent dies, whatever this
    process is doing (a thread cannot run while an import of torch holds the GIL). A watching thread is
    the fallback elsewhere. The parent is the pid the launcher gave (AUTOTUNE_WORKER_PARENT), not the one
    this process sees: an orchestrator killed while the worker was still starting has left it to another
    parent already, and the worker would watch that one (a fresh CI machine's first trial did so)."""
    given = os.environ.get(PARENT_VARIABLE, "")
    parent = int(given) if given.isdigit() else os.getppid()
    if os.getppid() != parent:  # the orchestrator died while this process started
        os._exit(1)
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def main(argv: list[str]) -> int:
    if argv and argv[0] == PRESTART_ARGUMENT:
        exit_with_parent()
        faulthandler.enable()  # the pool's log, until the job names its own
        job_path, result_path, started = wait_for_job(*argv[1:3])
    else:
        job_path, result_path = argv
        started = None
    # a native crash (a signal 11 in a compiled kernel, say) leaves no result: the Python stacks it happened in
    # go to the job folder's fault log, which the launcher records (the file stays open until the process
    # ends: faulthandler writes to it at the crash)
    faulthandler.enable(file=open(Path(job_path).parent / FAULT_LOG, "w", encoding="utf-8"))
    if started is None:
        exit_with_parent()
        started = time.perf_counter()
    startup_s = None
    try:
        job = Job.from_json(Path(job_path).read_text(encoding="utf-8"))
        from autotune.runtime import environment
        from autotune.worker.trial import run  # torch is imported here, after the parent watch is set

        env = environment.describe(job.device)  # the device's context: start-up, as in a worker started ahead
        startup_s = time.perf_counter() - started
        measurement = run(job, env)
    except BaseException as exc:  # noqa: BLE001 - everything becomes a Measurement
        try:
            from autotune.worker.classify import classify

            status, kind = classify(exc)
        except Exception:  # torch itself may be what failed to import
            status, kind = "error", "error"
        measurement = Measurement.failed(status, kind, f"{type(exc).__name__}: {exc}"[:2000],
                                         traceback=traceback.format_exc()[-8000:])
    measurement = replace(measurement, pid=os.getpid(), wall_s=time.perf_counter() - started,
                          startup_s=startup_s)
    write_atomic(result_path, measurement.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
