"""The launcher: a worker's failure comes back as a Measurement; hangs are killed; nothing is left behind."""

from __future__ import annotations

from dataclasses import replace

import psutil
import pytest

from autotune.config.candidate import Candidate
from autotune.worker.job import Job
from autotune.worker.launcher import launch
from autotune.config.workload import Workload


def job(tmp_path, bundled_model, fault=None) -> Job:
    return Job(model=str(bundled_model), candidate=Candidate(), workload=Workload(prompts=("def f():\n",), max_new_tokens=4),
               device="cpu", role="baseline", reference_path=str(tmp_path / "ref.pt"),
               result_path=str(tmp_path / "result.json"), repeats=1, warmup=0, fault=fault)


FAULT_ENV = {"AUTOTUNE_ALLOW_FAULTS": "1"}


def children_now() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_a_real_trial_measures(tmp_path, bundled_model):
    m = launch(job(tmp_path, bundled_model), tmp_path / "w", timeout_s=300)
    assert m.ok, m.traceback
    assert m.environment["device"] == "cpu" and m.environment["torch"]  # where it was measured
    assert m.decode_tokens_per_s > 0 and m.top1_agreement == 1.0 and m.pid and m.exit_code == 0
    assert (tmp_path / "ref.pt").exists()
    # the process's whole time includes its start-up (python, torch and transformers imported) and the work
    assert m.process_s > m.wall_s > m.load_s + m.warmup_s > 0


@pytest.mark.parametrize("fault,status,kind", [("oom", "oom", "oom"), ("cuda_error", "error", "cuda_error"),
                                               ("error", "error", "error")])
def test_exceptions_become_measurements(tmp_path, bundled_model, fault, status, kind):
    m = launch(job(tmp_path, bundled_model, fault), tmp_path / "w", timeout_s=300, env=FAULT_ENV)
    assert (m.status, m.failure_kind) == (status, kind)
    assert "injected" in m.message and "Traceback" in m.traceback


@pytest.mark.parametrize("fault,code", [("kill", -9), ("exit", 139), ("segfault", -11)])
def test_hard_crash(tmp_path, bundled_model, fault, code):
    m = launch(job(tmp_path, bundled_model, fault), tmp_path / "w", timeout_s=300, env=FAULT_ENV)
    assert (m.status, m.failure_kind, m.exit_code) == ("crash", "crash", code)


def test_a_native_crash_records_the_python_stack_it_happened_in(tmp_path, bundled_model):
    m = launch(job(tmp_path, bundled_model, "segfault"), tmp_path / "w", timeout_s=300, env=FAULT_ENV)
    assert "killed by signal 11" in m.message
    assert "Segmentation fault" in m.traceback and "in inject" in m.traceback and "in main" in m.traceback
    # the innermost frame first, however long the log after it
    assert m.traceback.index("in inject") < m.traceback.index("in main") < m.traceback.index("the end of worker.log")


def test_hang_is_killed_within_timeout(tmp_path, bundled_model):
    before = children_now()
    m = launch(job(tmp_path, bundled_model, "hang"), tmp_path / "w", timeout_s=20, env=FAULT_ENV)
    assert (m.status, m.failure_kind) == ("timeout", "timeout")
    assert not psutil.pid_exists(m.pid) or psutil.Process(m.pid).status() == psutil.STATUS_ZOMBIE
    assert children_now() <= before


def test_a_worker_killed_while_warming_up_timed_out_compiling_not_hanging(tmp_path, bundled_model):
    # every decoding step 0.5 s late: the warm-up pass of 200 tokens outlasts the timeout
    slow = replace(job(tmp_path, bundled_model, "slowgen"), warmup=1, result_path=str(tmp_path / "w" / "result.json"),
                   workload=Workload(prompts=("def f():\n",), max_new_tokens=200))  # the worker's phases beside it
    m = launch(slow, tmp_path / "w", timeout_s=45, env=FAULT_ENV)
    assert (m.status, m.failure_kind) == ("timeout", "warmup_timeout"), m.message
    assert "still warming up" in m.message and "--trial-timeout" in m.message


def test_faults_need_the_test_switch(tmp_path, bundled_model):
    m = launch(job(tmp_path, bundled_model, "error"), tmp_path / "w", timeout_s=300)
    assert m.ok


def test_a_worker_whose_orchestrator_died_while_it_started_leaves_at_once(tmp_path, bundled_model):
    """The orchestrator was killed before the worker got to look at its parent: the worker, already another
    process's child, must not take that one for its orchestrator (R8 on a fresh CI machine: it hung on)."""
    import os
    import subprocess
    import sys
    import time

    from autotune.worker.launcher import PARENT_VARIABLE, worker_environment

    path = tmp_path / "job.json"
    job(tmp_path, bundled_model, "hang").write(path)
    env = {**worker_environment(FAULT_ENV), PARENT_VARIABLE: "1"}  # the orchestrator it was started by: gone
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autotune.worker", str(path), str(tmp_path / "result.json")],
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 30
    assert not (tmp_path / "result.json").exists()
    assert worker_environment()[PARENT_VARIABLE] == str(os.getpid())  # set by the launcher
