"""Trials side by side (--overlap): a worker killed while it compiles loses nothing, and Ctrl-C ends every
process of the pipeline, paused ones included."""

from __future__ import annotations

import signal

import psutil
import pytest
from optuna.trial import TrialState

from autotune.tuner.trials import budget_used, retried_trial_number
from faultkit import attrs, load, running_trial_worker, start_search, wait_for, worker_processes

pytestmark = pytest.mark.slow


def phases(workdir, number: int) -> str:
    return (workdir / "studies" / "r" / "trials" / f"{number:05d}" / "PHASES").read_text()


def gone(proc: psutil.Process) -> bool:
    return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_a_worker_killed_while_compiling_loses_nothing(workdir):
    # trial 2 warms up slowly (every decoding step 0.5 s longer) beside trial 1; it is killed mid-way
    proc = start_search(workdir, 5, "--overlap", "2", "--warmup", "1", "--trial-timeout", "120", faults="2:slowgen")
    worker = running_trial_worker(workdir, 2)
    wait_for(lambda: "warmup" in phases(workdir, 2), timeout=120, interval=0.1)
    worker.kill()
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    trials = load(workdir).trials
    killed = trials[2]
    assert killed.state == TrialState.FAIL and attrs(killed)["failure_kind"] == "crash"
    retry = next(t for t in trials if retried_trial_number(t) == 2)
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED) and retry.params == killed.params
    # every other trial kept its result: measured, or stopped early as slower than the best (PRUNED)
    others = [t for t in trials if t.number != 2]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) and attrs(t)["status"] in ("ok", "stopped", "unsupported")
               for t in others), [(t.number, t.state) for t in others]
    assert budget_used(trials) == 5 and not worker_processes(workdir)


def test_ctrl_c_ends_every_process_of_the_pipeline(workdir):
    # trial 1 hangs; trial 2 measures slowly, holding the lease, so trial 1 is paused when Ctrl-C comes
    proc = start_search(workdir, 5, "--overlap", "2", "--max-new-tokens", "40", "--trial-timeout", "300",
                        faults="1:hang,2:slowgen")
    hanging, measuring = running_trial_worker(workdir, 1), running_trial_worker(workdir, 2)
    wait_for(lambda: "measure" in phases(workdir, 2), timeout=120, interval=0.1)
    wait_for(lambda: hanging.status() == psutil.STATUS_STOPPED, timeout=10, interval=0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert gone(hanging) and gone(measuring)
    assert not [p for p in worker_processes(workdir) if not gone(p)]
    trials = load(workdir).trials
    for number in (1, 2):
        assert trials[number].state == TrialState.FAIL and attrs(trials[number])["failure_kind"] == "interrupted"
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_ctrl_c_during_the_confirmations_ends_them_and_keeps_the_preset(workdir):
    # the best's confirmations run side by side, each decoding step 0.5 s late, so both are alive when Ctrl-C comes
    proc = start_search(workdir, 2, "--overlap", "2", "--confirm", "2", "--max-new-tokens", "40",
                        faults="confirm:slowgen")
    trials_dir = workdir / "studies" / "r" / "trials"

    def confirmations() -> list[psutil.Process]:
        pids = [int(p.read_text()) for p in trials_dir.glob("confirm-*/PID") if p.read_text().strip()]
        return [p for p in worker_processes(workdir) if p.pid in pids]

    running = wait_for(lambda: (found := confirmations()) and len(found) == 2 and found, timeout=300, interval=0.1)
    wait_for(lambda: any("measure" in p.read_text() for p in trials_dir.glob("confirm-*/PHASES")), timeout=120,
             interval=0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert all(gone(p) for p in running) and not [p for p in worker_processes(workdir) if not gone(p)]
    assert (workdir / "studies" / "r.preset.json").exists()  # written before the confirmations
    study = load(workdir)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len(study.user_attrs.get("stability", {}).get("runs", [])) < 2
