"""R12-R15: workers that share one study (autotune study create / worker / search --gpus) on PostgreSQL,
and SQLite with the dashboard reading alongside."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import psutil
import pytest
from faultkit import (create_command, environment, finish_all, load, run_search, running_trial_worker,
                      start_all, start_search, wait_for, worker_command)
from optuna.trial import TrialState

from autotune.tuner.storage import storage_for

pytestmark = pytest.mark.slow

STORAGE_ERRORS = ("StorageInternalError", "Traceback", "UniqueViolation", "IntegrityError", "alembic",
                  "database is locked")


def load_shared(url: str, study: str = "r") -> optuna.Study:
    return optuna.load_study(study_name=study, storage=storage_for(url, heartbeat_interval=None))


def assert_clean(outputs: list[tuple[int, str]]) -> None:
    for code, output in outputs:
        assert code == 0, output
        for error in STORAGE_ERRORS:
            assert error not in output, output


def test_r12_four_workers_on_postgresql_lose_and_duplicate_nothing(workdir, postgres_url):
    created = subprocess.run(create_command(postgres_url, 12), cwd=workdir, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    started = time.monotonic()
    assert_clean(finish_all(start_all([worker_command(postgres_url)] * 4, workdir)))
    print(f"4 workers, 12 trials: {time.monotonic() - started:.0f} s")
    trials = load_shared(postgres_url).trials
    assert all(t.state.is_finished() for t in trials), [t.state for t in trials]
    assert 12 <= len(trials) <= 15
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) >= 2, "the trials were not shared out"
    measured = [t.user_attrs["candidate_key"] for t in trials if t.user_attrs.get("duplicate_of") is None]
    assert [key for key, n in Counter(measured).items() if n > 1] == []  # no configuration measured twice
    assert len(measured) < len(trials)  # 8 configurations in 12+ trials: the rest reused (duplicate_of)
    assert [t.user_attrs["role"] for t in trials].count("baseline") == 1
    assert {t.user_attrs["status"] for t in trials} == {"ok"}


@pytest.mark.parametrize("storage", ["postgresql", "sqlite"])
def test_r13_simultaneous_start_gives_one_study(workdir, storage, request):
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else f"sqlite:///{workdir}/r.db"
    # Workers before the study: each says to create it, and none creates one.
    outputs = finish_all(start_all([worker_command(url)] * 4, workdir))
    for code, output in outputs:
        assert code == 2 and "autotune study create" in output, output
        assert "Traceback" not in output and "alembic" not in output.lower()
    assert optuna.get_all_study_names(storage_for(url, heartbeat_interval=None)) == []
    # Four `study create` in the same second on the fresh database: one study, seeded once.
    assert_clean(finish_all(start_all([create_command(url, 4)] * 4, workdir)))
    assert optuna.get_all_study_names(storage_for(url, heartbeat_interval=None)) == ["r"]
    waiting = load_shared(url).get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["role"] for t in waiting] == ["baseline"]


def test_r14_sqlite_with_the_dashboard_polling(workdir):
    url = f"sqlite:///{workdir}/studies/r.db"
    proc = start_search(workdir, 4, "--storage", url)
    wait_for(lambda: load(workdir).trials, timeout=120)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = subprocess.Popen([str(Path(sys.executable).with_name("optuna-dashboard")), url, "--host", "127.0.0.1",
                                  "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = f"http://127.0.0.1:{port}/api/studies"
        study_id = wait_for(lambda: json.load(urllib.request.urlopen(api, timeout=5))["study_summaries"][0]["study_id"], 60)
        polls, seen = 0, 0
        while proc.poll() is None:  # as a browser on the dashboard does, only faster
            with urllib.request.urlopen(f"{api}/{study_id}?after=0", timeout=30) as response:
                seen = max(seen, len(json.load(response)["trials"]))
            polls += 1
            time.sleep(0.1)
        output = proc.stdout.read()
    finally:
        dashboard.terminate()
    dashboard_log = dashboard.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert polls > 10 and seen >= 3
    assert "database is locked" not in output + dashboard_log
    assert len([t for t in load(workdir).trials if t.state == TrialState.COMPLETE]) == 4
    # More than one worker on SQLite is refused, with the reason.
    refused = run_search(workdir, 4, "--storage", url, "--gpus", "0,1")
    assert refused.returncode == 2 and "SQLite" in refused.stderr and "parallel" in refused.stderr


def test_r15_a_postgresql_outage_mid_trial_loses_nothing(workdir, postgres_url, postgres_control):
    created = subprocess.run(create_command(postgres_url, 3), cwd=workdir, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    worker = start_all([worker_command(postgres_url)], workdir, faults="0:slow10")[0]
    try:
        running_trial_worker(workdir, 0)  # the baseline: always launched
    except AssertionError:
        worker.kill()
        raise AssertionError(worker.communicate()[0]) from None
    subprocess.run([*postgres_control, "stop"], check=True)
    try:
        time.sleep(30)  # trial 0 ends in the middle of the outage
    finally:
        subprocess.run([*postgres_control, "start"], check=True)
    (code, output), = finish_all([worker], timeout=300)
    assert code == 0, output
    assert "the storage cannot be reached: trial 0's measurement is saved" in output
    kept = json.loads((workdir / "studies/r/results/trial-00000.json").read_text())
    assert kept["status"] == "ok"
    reconciled = subprocess.run([sys.executable, "-m", "autotune.cli", "reconcile", "--study", "r", "--storage",
                                 postgres_url], cwd=workdir, capture_output=True, text=True)
    assert reconciled.returncode == 0 and "0 measurement(s) imported" in reconciled.stdout, reconciled.stderr
    trials = load_shared(postgres_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs["status"] == "ok"
    assert trials[0].value == kept["decode_tokens_per_s"]


def test_search_gpus_shares_a_journal_file_and_retries_a_dead_workers_trial(workdir):
    """`search --gpus 0,1` on one host: two workers on a journal file, each seeing its own device; one
    killed mid-trial has its trial failed and retried, and is started again."""
    proc = start_search(workdir, 5, "--gpus", "0,1", "--trial-timeout", "120", faults="0:slow15")
    journal = workdir / "studies" / "r.log"
    running_trial_worker(workdir, 0)
    study = wait_for(lambda: optuna.load_study(study_name="r", storage=storage_for(str(journal))), timeout=60)
    trial0 = wait_for(lambda: study.trials[0].user_attrs.get("worker"), timeout=60)
    psutil.Process(trial0["pid"]).kill()  # the worker (an orchestrator), not the trial's process
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    assert f"worker for gpu {trial0['gpu']} stopped (exit -9); its running trial(s) [0] failed and retried" in output
    trials = optuna.load_study(study_name="r", storage=storage_for(str(journal))).trials
    assert all(t.state.is_finished() for t in trials) and len(trials) >= 5
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["failure_kind"] == "worker_died"
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [0])
    assert retry.user_attrs["status"] == "ok" and retry.user_attrs["role"] == "baseline"
    assert {t.user_attrs["worker"]["gpu"] for t in trials[1:]} == {"0", "1"}
    assert "preset written to studies/r.preset.json" in output


def test_a_worker_on_another_type_of_device_measures_a_baseline_of_its_own(workdir):
    """Workers of one study on two types of device (the second one's name faked): trial 0 is the first
    type's baseline; the second type measures one of its own, once, and its candidates are compared with
    that one, not refused or failed for a missing reference."""
    journal = "studies/r.log"
    created = subprocess.run(create_command(journal, 5), cwd=workdir, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    first = start_all([worker_command(journal)], workdir, faults="1:slow20")[0]
    wait_for(lambda: load_shared(str(workdir / journal)).trials[0].state == TrialState.COMPLETE, timeout=300)
    other = subprocess.Popen(worker_command(journal), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=environment(AUTOTUNE_FAKE_DEVICE_NAME="Another GPU"))
    outputs = finish_all([first, other], timeout=600)
    assert_clean(outputs)
    assert "this type of machine (cpu:Another GPU) has no baseline in the study yet" in outputs[1][1]
    study = load_shared(str(workdir / journal))
    baselines = [t for t in study.trials if t.user_attrs.get("role") == "baseline"]
    machines = [t.user_attrs["machine"] for t in baselines]
    assert len(baselines) == 2 and machines[1] == "cpu:Another GPU" and machines[0] != machines[1], machines
    assert {t.user_attrs["status"] for t in study.trials} == {"ok"}
    assert [t.user_attrs.get("duplicate_of") for t in baselines] == [None, None]  # each measured, not reused
    assert {key.split(":", 1)[1] for key in study.user_attrs if key.startswith("baseline_reference:")} == set(machines)
    assert (workdir / "studies/r/baseline.pt").is_file()
    assert (workdir / "studies/r/baseline-cpu-Another-GPU.pt").is_file()
    ran_there = [t for t in study.trials if t.user_attrs["machine"] == "cpu:Another GPU"]
    assert len(ran_there) >= 2, [(t.number, t.user_attrs["machine"]) for t in study.trials]
