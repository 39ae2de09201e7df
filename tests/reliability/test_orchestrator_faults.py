"""R8-R11, R16-R18: the orchestrator killed, interrupted, restarted; resumes and their checks."""

from __future__ import annotations

import json
import signal
import time

import optuna
import psutil
import pytest
from faultkit import (DATA, attrs, load, run_search, running_trial_worker, start_search, wait_for,
                      worker_processes)
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.tuner.trials import budget_used, retried_trial_number
from autotune.tuner.storage import storage_for
from autotune.config.settings import SearchSettings
from autotune.tuner.loop import Tuner
from autotune.config.workload import Workload

pytestmark = pytest.mark.slow


def kill_orchestrator_during_trial_1(workdir, trials: int, faults: str = "1:hang") -> psutil.Process:
    proc = start_search(workdir, trials, "--trial-timeout", "120", faults=faults)
    worker = running_trial_worker(workdir, 1)
    proc.kill()
    proc.wait(timeout=10)
    return worker


def test_r8_kill_9_orchestrator_mid_trial(workdir):
    worker = kill_orchestrator_during_trial_1(workdir, 3)
    wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, timeout=5)
    assert load(workdir).trials[1].state == TrialState.RUNNING
    time.sleep(4)  # the grace period (3 s) passes before the restart
    run = run_search(workdir, 3)
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    assert trials[1].state == TrialState.FAIL
    retry = trials[2]
    assert retry.system_attrs["retry_history"] == [1] and retry.params == trials[1].params
    assert attrs(retry)["status"] == "ok"


def test_r8_a_configuration_that_keeps_killing_its_worker_is_not_tried_a_4th_time(workdir):
    run = run_search(workdir, 14, "--max-retry", "2", "--max-initial-failures", "10",
                     faults="pad_to_multiple_of=8:kill")
    assert run.returncode == 0, run.stdout + run.stderr
    by_config: dict[str, list] = {}
    for t in load(workdir).trials:
        if t.params.get("pad_to_multiple_of") == 8:
            by_config.setdefault(attrs(t)["candidate_key"], []).append(t)
    assert by_config, "the sampler never proposed pad_to_multiple_of=8"
    for trials in by_config.values():
        launched = [t for t in trials if attrs(t).get("duplicate_of") is None]
        assert all(attrs(t)["failure_kind"] == "crash" for t in launched)
        assert len(launched) <= 3
        for later in trials[3:]:  # proposed again after its retries were used up: not launched
            assert attrs(later)["duplicate_of"] == launched[-1].number
    first, *retries = max(by_config.values(), key=len)[:3]
    assert len(retries) == 2, "the killed configuration was not retried twice"
    assert retries[-1].system_attrs["retry_history"] == [first.number, retries[0].number]


def test_r9_no_zombie_trial_after_a_quick_restart(workdir):
    kill_orchestrator_during_trial_1(workdir, 4)
    run = run_search(workdir, 4)  # at once: trial 1 is not stale yet
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    assert trials[1].state == TrialState.FAIL


def test_r10_a_long_trial_is_not_marked_stale(workdir):
    proc = start_search(workdir, 2, "--trial-timeout", "120", faults="1:slow25")
    running_trial_worker(workdir, 1)
    # A second worker on the same storage keeps failing stale trials while trial 1 runs 8 x the grace period.
    other = optuna.load_study(study_name="r", storage=storage_for(f"sqlite:///{workdir}/studies/r.db",
                                                                  heartbeat_interval=1, grace_period=3))
    while proc.poll() is None:
        optuna.storages.fail_stale_trials(other)
        time.sleep(1)
    assert proc.returncode == 0, proc.stdout.read()
    trial = load(workdir).trials[1]
    assert trial.state == TrialState.COMPLETE and attrs(trial)["status"] == "ok"


def test_r10_a_live_trial_failed_from_another_handle_is_reconciled(workdir):
    proc = start_search(workdir, 2, "--trial-timeout", "120", faults="1:slow10")
    running_trial_worker(workdir, 1)
    storage = storage_for(f"sqlite:///{workdir}/studies/r.db", heartbeat_interval=None)
    study = optuna.load_study(study_name="r", storage=storage)
    storage.set_trial_state_values(study.trials[1]._trial_id, TrialState.FAIL)  # wrongly, while it runs
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert "its measurement is kept in results/" in output
    trials = load(workdir).trials
    kept = json.loads((workdir / "studies/r/results/trial-00001.json").read_text())
    assert trials[1].state == TrialState.FAIL and kept["status"] == "ok"
    imported = trials[kept["reconciled_to"]]
    assert imported.state == TrialState.COMPLETE and attrs(imported)["reconciled_from"] == 1
    assert imported.params == trials[1].params and attrs(imported)["status"] == "ok"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_r11_ctrl_c_and_sigterm(workdir, sig, code):
    proc = start_search(workdir, 3, "--trial-timeout", "120", faults="1:hang")
    worker = running_trial_worker(workdir, 1)
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == code, output
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    trial = load(workdir).trials[1]
    assert trial.state == TrialState.FAIL and attrs(trial)["failure_kind"] == "interrupted"
    run = run_search(workdir, 3)
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    # the interrupted trial did not take a trial of the budget: its retry ran when the command was run again
    retry = next(t for t in trials if retried_trial_number(t) == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == trial.params
    assert budget_used(trials) == 3 and not [t for t in trials if not t.state.is_finished()]


def test_r16_resume_continues_the_budget(workdir):
    proc = start_search(workdir, 25)
    wait_for(lambda: (workdir / "studies/r.db").exists() and
             len([t for t in load(workdir).trials if t.state.is_finished()]) >= 10, timeout=600)
    proc.kill()
    proc.wait(timeout=10)
    for worker in worker_processes(workdir):
        worker.kill()
    measured_before = {attrs(t)["candidate_key"] for t in load(workdir).trials
                       if t.state == TrialState.COMPLETE and attrs(t).get("duplicate_of") is None}
    time.sleep(4)  # past the grace period
    run = run_search(workdir, 25)
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    assert budget_used(trials) == 25 and not [t for t in trials if not t.state.is_finished()]
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert all(attrs(t)["failure_kind"] for t in stale)  # a trial failed on resume says why
    relaunched = [t for t in trials[10:] if t.state == TrialState.COMPLETE and attrs(t).get("duplicate_of") is None
                  and attrs(t)["candidate_key"] in measured_before and "reconciled_from" not in attrs(t)]
    assert relaunched == []  # completed configurations were not measured again


def test_r17_resume_refuses_a_mismatch(workdir):
    assert run_search(workdir, 1).returncode == 0
    space = workdir / "edited.yaml"
    space.write_text((DATA / "small_space.yaml").read_text().replace("16, 32", "16, 64"))
    run = run_search(workdir, 2, "--space", str(space))
    assert run.returncode == 5 and "search space" in run.stderr and "--new-study" in run.stderr
    run = run_search(workdir, 2, env={"AUTOTUNE_FAKE_DEVICE_NAME": "Another GPU"})
    assert run.returncode == 5 and "machine" in run.stderr
    run = run_search(workdir, 1, "--space", str(space), "--new-study")
    assert run.returncode == 0, run.stdout + run.stderr


def test_r18_seeding_is_idempotent(workdir, bundled_model):
    space = workdir / "space.yaml"
    space.write_text("knobs:\n  cache_implementation: {values: [dynamic, static]}\n"
                     "  compile: {values: [off, default], when: {cache_implementation: [static]}}\n")
    settings = SearchSettings(model=str(bundled_model), workload=Workload(prompts=("x",), max_new_tokens=2),
                              study_name="s", space=str(space), device="cpu", root=str(workdir / "studies"))
    tuner = Tuner(settings)
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.enqueue_seeds()
    again = Tuner(settings)
    again.prepare()
    again.enqueue_seeds()
    waiting = again.study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["role"] for t in waiting] == ["baseline", "seed-recipe"]
    assert json.dumps(waiting[0].system_attrs["fixed_params"]) == json.dumps(
        again.space.params_of(Candidate()))
