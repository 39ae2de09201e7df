"""Launch one trial in a worker process of its own, with a timeout.

The child runs `python -m autotune.worker JOB RESULT` in its own process group, or is a worker started ahead of
the trial that reads its job on stdin (trials side by side: autotune.worker.prestart). The parent waits for it;
on timeout (or when the parent itself is interrupted) the whole group is killed. What comes back is
always a Measurement: the child's own, or one that says it timed out or crashed, with the exit code and
the tail of its output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from autotune.interrupt import interruptible
from autotune.config.measurement import Measurement
from autotune.files import write_atomic
from autotune.worker.job import Job
from autotune.worker.lease import LEASE_VARIABLE
from autotune.worker.phase import read_phases, write_phase

KILL_GRACE_S = 5.0
PHASE_POLL_S = 0.5


# The worker's faulthandler writes here (the job folder): a native crash's Python stacks, innermost frame
# first, so the launcher keeps its head; the end of worker.log would lose a deep stack's innermost frames.
FAULT_LOG = "fault.log"
# The worker's pid, in its job folder: the process that runs the job, whether started for it or ahead of it.
PID_FILE = "PID"


def tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except FileNotFoundError:
        return ""


def crash_report(job_dir: Path, log_path: Path, limit: int = 6000) -> str:
    """What a worker that died without a result left: the head of its fault log (where it crashed), then the
    end of its log."""
    try:
        fault = (job_dir / FAULT_LOG).read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        fault = ""
    log = tail(log_path)
    return f"{fault[:limit]}\n--- the end of worker.log:\n{log}" if fault else log


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker and anything it started; wait until it is gone. A paused worker (the measurement lease)
    is continued after SIGTERM, or it would not act on it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            os.killpg(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


# The pid of the process that starts a worker: the worker leaves at once if its parent is another one by the
# time it looks (the orchestrator died while the worker was still starting; autotune.worker.__main__).
PARENT_VARIABLE = "AUTOTUNE_WORKER_PARENT"


def worker_environment(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    env[PARENT_VARIABLE] = str(os.getpid())
    return env


def wait_for(proc: subprocess.Popen, timeout_s: float, job_dir: Path, on_phase, held_back=None) -> int:
    """Wait for the worker like `proc.wait(timeout_s)`, telling `on_phase(phase)` of every phase the
    worker writes in its job folder, in order, including those it wrote just before it exited. `held_back()`
    (optional) gives the seconds the worker was held back by the measurement lease: they do not count."""
    if on_phase is None and held_back is None:
        with interruptible():
            return proc.wait(timeout=timeout_s)
    on_phase = on_phase or (lambda phase: None)
    started = time.monotonic()
    seen = 0

    def tell_new_phases():
        nonlocal seen
        phases = read_phases(job_dir)
        for phase in phases[seen:]:
            on_phase(phase)
        seen = max(seen, len(phases))

    while True:
        tell_new_phases()
        left = started + timeout_s + (held_back() if held_back else 0.0) - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        try:
            with interruptible():
                exit_code = proc.wait(timeout=min(PHASE_POLL_S, left))
        except subprocess.TimeoutExpired:
            continue
        tell_new_phases()
        return exit_code


def lease_pipes(lease) -> tuple[tuple[int, ...], dict, tuple[int, int] | None]:
    """The pipe ends a pipelined worker inherits (autotune.worker.lease), its environment entry, and the
    orchestrator's ends (requests to read, grants to write); nothing where there is no lease."""
    if lease is None:
        return (), {}, None
    request_r, request_w = os.pipe()
    grant_r, grant_w = os.pipe()
    return (request_w, grant_r), {LEASE_VARIABLE: f"{request_w},{grant_r}"}, (request_r, grant_w)


@dataclass
class Started:
    """A worker process as the launcher holds it: the process, the thread answering its lease (None without a
    lease), and what it had done before its job came (a pre-started worker: autotune.worker.prestart)."""

    proc: subprocess.Popen
    served: threading.Thread | None = None
    spawned_at: float = field(default_factory=time.perf_counter)
    held_back_before: float = 0.0  # seconds the lease held it back before its job came (not the job's time)


def spawn(arguments: list[str], stdout, env: dict | None, lease=None, stdin=subprocess.DEVNULL) -> Started:
    """Start `python -m autotune.worker ARGUMENTS` in its own process group, registered with `lease` (paused at
    once while another worker measures) where there is one.

    Args:
        arguments: the worker's command line after the module name.
        stdout: the file its output (stdout and stderr) goes to.
        env: variables added to this process's environment for it.
        lease: autotune.tuner.lease.Lease, or None.
        stdin: its standard input (subprocess.PIPE for a pre-started worker, which reads its job there).

    Returns:
        The Started worker.
    """
    inherited, lease_env, ours = lease_pipes(lease)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autotune.worker", *arguments], stdout=stdout,
                                stderr=subprocess.STDOUT, stdin=stdin, start_new_session=True,
                                env=worker_environment({**(env or {}), **lease_env}), pass_fds=inherited)
    finally:
        for fd in inherited:
            os.close(fd)
    served = None
    if lease is not None:
        lease.register(proc.pid)
        served = lease.serve(proc.pid, *ours)
    return Started(proc, served)


def launch(job: Job, job_dir: str | Path, timeout_s: float, env: dict | None = None, on_phase=None,
           lease=None, pool=None) -> Measurement:
    """Run `job` in a fresh process and return its Measurement. Never raises for a worker's failure;
    KeyboardInterrupt / SystemExit in the parent kill the worker and propagate.

    Args:
        job: the trial to run.
        job_dir: its folder (job.json, worker.log, PHASES, the worker's pid in PID).
        timeout_s: seconds it may take, not counting those the lease holds it back.
        env: variables for the worker's environment.
        on_phase: called with each phase the worker reports (autotune.worker.phase), as it changes.
        lease: autotune.tuner.lease.Lease: the worker measures only while it holds it.
        pool: autotune.worker.prestart.WarmPool: the job goes to one of its started workers where one started
            with the same `env` is waiting (a process of its own all the same, which ends with the job).

    Returns:
        The worker's Measurement, or one that says why it has none (timeout, crash).
    """
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = job_dir / "job.json", Path(job.result_path), job_dir / "worker.log"
    result_path.unlink(missing_ok=True)
    write_phase(job_dir, "start", fresh=True)
    job.write(job_path)
    started = time.perf_counter()
    worker = pool.hand_over(env or {}, job_path, result_path, log_path) if pool is not None else None
    prestarted_s = started - worker.spawned_at if worker is not None else None
    if worker is None:
        with open(log_path, "wb") as log:
            worker = spawn([str(job_path), str(result_path)], log, env, lease)
    proc = worker.proc
    (job_dir / PID_FILE).write_text(str(proc.pid), encoding="utf-8")

    def held_back() -> float:
        return lease.held_back(proc.pid) - worker.held_back_before

    try:
        exit_code = wait_for(proc, timeout_s, job_dir, on_phase, held_back=held_back if lease is not None else None)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return timed_out(job_dir, log_path, proc, timeout_s, started)
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if lease is not None:
            lease.unregister(proc.pid)
            worker.served.join(timeout=KILL_GRACE_S)
    return outcome(job_dir, result_path, log_path, proc, exit_code, started, prestarted_s)


def timed_out(job_dir: Path, log_path: Path, proc: subprocess.Popen, timeout_s: float,
              started: float) -> Measurement:
    """The Measurement of a worker killed at its timeout. One killed while warming up was compiling or
    running its warm-up passes: `warmup_timeout`, a fact of the configuration at this timeout, which a retry at
    the same timeout spends again. One killed in any other phase hung (`timeout`, an accident: retried)."""
    phases = read_phases(job_dir)
    if phases and phases[-1] == "warmup":
        kind, message = "warmup_timeout", (f"the worker was still warming up (compiling) after {timeout_s:g} s "
                                           "and was killed (raise --trial-timeout: this configuration needs longer "
                                           "to compile here)")
    else:
        kind, message = "timeout", (f"the worker did not finish within {timeout_s:g} s and was killed (raise "
                                    "--trial-timeout if this configuration needs longer)")
    return Measurement.failed("timeout", kind, message, traceback=tail(log_path), pid=proc.pid,
                              exit_code=proc.returncode, wall_s=time.perf_counter() - started)


def outcome(job_dir: Path, result_path: Path, log_path: Path, proc: subprocess.Popen, exit_code: int,
            started: float, prestarted_s: float | None = None) -> Measurement:
    """The worker's own Measurement with the launcher's figures, or one that says it died without one."""
    if result_path.exists():
        measurement = Measurement.from_json(result_path.read_text(encoding="utf-8"))
        measurement = replace(measurement, exit_code=exit_code, process_s=time.perf_counter() - started,
                              prestarted_s=prestarted_s)
        write_atomic(result_path, measurement.to_json())  # the job's own record, with the launcher's figures
        return measurement
    how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with code {exit_code}"
    return Measurement.failed("crash", "crash", f"the worker {how} without a result",
                              traceback=crash_report(job_dir, log_path),
                              pid=proc.pid, exit_code=exit_code, wall_s=time.perf_counter() - started)
