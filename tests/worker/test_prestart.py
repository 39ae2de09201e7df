"""Workers started ahead of their trials: a job runs in one of them as in a fresh worker, each worker runs one job,
and none is left waiting once the pool closes."""

from __future__ import annotations

import threading
import time

import psutil

from autotune.config.candidate import Candidate
from autotune.config.workload import Workload
from autotune.worker.job import Job
from autotune.worker.launcher import launch
from autotune.worker.prestart import PRESTART_ARGUMENT, WarmPool

ENV = {"TORCHINDUCTOR_CACHE_DIR": "/nonexistent/inductor-cache"}
FAULT_ENV = {"AUTOTUNE_ALLOW_FAULTS": "1"}


def job(tmp_path, bundled_model, fault=None) -> Job:
    return Job(model=str(bundled_model), candidate=Candidate(), workload=Workload(prompts=("def f():\n",), max_new_tokens=4),
               device="cpu", role="baseline", reference_path=str(tmp_path / "ref.pt"),
               result_path=str(tmp_path / "result.json"), repeats=1, warmup=0, fault=fault)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_job_runs_in_a_started_worker_and_the_next_one_starts(tmp_path, bundled_model):
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    try:
        pool.start(ENV)
        [waiting] = pool.waiting_pids()
        assert PRESTART_ARGUMENT in psutil.Process(waiting).cmdline()
        time.sleep(3)  # its start-up (torch, transformers) happens before the job comes
        m = launch(job(tmp_path, bundled_model), tmp_path / "w", timeout_s=300, env=ENV, pool=pool)
        assert m.ok, m.traceback
        assert m.pid == waiting and int((tmp_path / "w" / "PID").read_text()) == waiting
        assert m.prestarted_s >= 3 and m.process_s > m.wall_s > m.load_s > 0
        assert wait_until(lambda: gone(waiting))  # one job, then the process ends
        assert (tmp_path / "w" / "worker.log").exists() and (tmp_path / "result.json").exists()
        [following] = pool.waiting_pids()
        assert following != waiting
    finally:
        pool.close()
    assert wait_until(lambda: gone(following)) and not pool.waiting_pids()
    assert not list((tmp_path / "prestarted").iterdir())  # the waiting worker's log went with it


def test_a_launch_with_another_environment_gets_a_worker_of_its_own(tmp_path, bundled_model):
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    try:
        pool.start(ENV)
        [waiting] = pool.waiting_pids()
        m = launch(job(tmp_path, bundled_model, "error"), tmp_path / "w", timeout_s=300, env=FAULT_ENV, pool=pool)
        assert (m.status, m.failure_kind) == ("error", "error") and "injected" in m.message
        assert m.pid != waiting and m.prestarted_s is None  # spawned for it, with the variables it asked for
        assert wait_until(lambda: gone(waiting))  # the worker started with other variables is not kept
    finally:
        pool.close()


def test_a_crash_in_a_started_worker_is_reported_from_its_job_log(tmp_path, bundled_model):
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    try:
        pool.start(FAULT_ENV)
        m = launch(job(tmp_path, bundled_model, "segfault"), tmp_path / "w", timeout_s=300, env=FAULT_ENV, pool=pool)
        assert (m.status, m.failure_kind, m.exit_code) == ("crash", "crash", -11)
        assert m.prestarted_s is None or m.prestarted_s > 0
        assert "Segmentation fault" in m.traceback and "in inject" in m.traceback
    finally:
        pool.close()


def test_a_waiting_worker_leaves_when_its_pool_is_gone(tmp_path):
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    pool.start(ENV)
    [_, worker, _] = pool.waiting[0]
    worker.proc.stdin.close()  # as when the orchestrator's end of the pipe closes
    assert worker.proc.wait(timeout=120) == 0
    pool.close()


def test_the_first_launches_find_one_worker_each_and_later_ones_keep_size_waiting(tmp_path, bundled_model):
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    try:
        pool.start(ENV, count=3)  # one per slot, for the launches that come at once after the baseline
        first = pool.waiting_pids()
        assert len(first) == 3
        m = launch(job(tmp_path, bundled_model), tmp_path / "w", timeout_s=300, env=ENV, pool=pool)
        assert m.ok, m.traceback
        assert m.pid == first[0] and pool.waiting_pids() == first[1:]  # none more started: size is 1
    finally:
        pool.close()
    assert all(wait_until(lambda pid=pid: gone(pid)) for pid in first)


def test_a_started_worker_outlives_the_thread_that_asked_for_it(tmp_path):
    # a worker dies with the thread that forked it (PR_SET_PDEATHSIG); a trial slot's thread asks for the next
    # worker and may end, at the budget, while that worker runs another slot's trial
    pool = WarmPool(1, "cpu", tmp_path / "prestarted")
    try:
        def ask_and_end():
            pool.start(ENV)
            time.sleep(2)  # the worker has set its parent-death signal by now

        asking = threading.Thread(target=ask_and_end)
        asking.start()
        asking.join()
        [waiting] = pool.waiting_pids()
        time.sleep(1)
        assert not gone(waiting)
    finally:
        pool.close()
    assert wait_until(lambda: gone(waiting))
