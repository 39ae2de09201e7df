"""Shared studies without processes: what a study records for its workers, and the input they refuse."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from support import ROOT

from autotune.cli import main
from autotune.config.availability import Machine, for_machine
from autotune.config.settings import SearchSettings
from autotune.config.space import SearchSpace
from autotune.config.workload import Workload
from autotune.errors import InputError
from autotune.tuner.coordination import trials_to_wait_for
from autotune.tuner.local_workers import parse_gpus, shared_storage_url
from autotune.tuner.storage import is_journal, is_shareable, with_driver


def test_settings_round_trip_through_json():
    settings = SearchSettings(model="/m", workload=Workload(prompts=("a", "b"), max_new_tokens=4), study_name="s",
                              trials=12, vram=2**30, faults=(("1", "hang"),))
    assert SearchSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert SearchSettings.from_dict(settings.to_dict(), root="elsewhere").root == "elsewhere"


@pytest.mark.parametrize("name", ["default", str(ROOT / "tests" / "data" / "small_space.yaml")])
def test_a_recorded_space_is_the_same_space(name):
    space = for_machine(SearchSpace.load(name), Machine("cpu", has_flex_attention=True), batch_size=1)
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again.fingerprint() == space.fingerprint() and again.to_dict() == space.to_dict()


def test_gpus_option():
    assert parse_gpus("0,1, 3") == ("0", "1", "3")
    for bad in ("", "0,0", "a,b", "-1"):
        with pytest.raises(InputError, match="--gpus takes distinct device indices"):
            parse_gpus(bad)


def test_storages_several_workers_may_share():
    assert shared_storage_url(None, "studies", "s", 4) == "studies/s.log" and is_journal("studies/s.log")
    assert shared_storage_url("postgresql://u:p@h/db", "studies", "s", 4) == "postgresql://u:p@h/db"
    assert shared_storage_url("sqlite:///x.db", "studies", "s", 1) == "sqlite:///x.db"
    with pytest.raises(InputError, match="SQLite is not made for parallel optimization"):
        shared_storage_url("sqlite:///x.db", "studies", "s", 2)
    assert not is_shareable("sqlite:///x.db") and is_shareable("postgresql://h/db")
    assert with_driver("postgresql://u@h/db") in ("postgresql+psycopg://u@h/db", "postgresql://u@h/db")


def test_a_worker_without_a_study_says_to_create_it(tmp_path):
    result = CliRunner().invoke(main, ["worker", "--study", "nope", "--storage", str(tmp_path / "s.log")])
    assert result.exit_code == 2 and "autotune study create --study nope" in result.output
    assert "Traceback" not in result.output


def test_search_refuses_several_workers_on_sqlite(tmp_path, bundled_model):
    result = CliRunner().invoke(main, ["search", "--model", str(bundled_model), "--device", "cpu", "--gpus", "0,1",
                                       "--storage", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 2 and "SQLite is not made for parallel optimization" in result.output


def test_a_baseline_waits_only_for_a_baseline_of_its_configuration():
    """Trial 0 (the baseline) died and its retry is trial 2; trial 1, a search trial of the same
    configuration, is running and waits for the reference. Trial 2 must not wait for trial 1 (a deadlock
    that ended with the baseline reusing trial 1's "no baseline" error), but a search trial waits for both."""
    def running(number, role, machine="cuda:H200"):
        return SimpleNamespace(number=number, user_attrs={"candidate_key": "k", "role": role, "machine": machine})

    trials = [running(1, "search"), running(2, "baseline")]
    assert trials_to_wait_for(trials, "k", 2, "baseline", "cuda:H200") == []
    assert trials_to_wait_for(trials, "k", 3, "baseline", "cuda:H200") == [2]
    assert trials_to_wait_for(trials, "k", 3, "search", "cuda:H200") == [1, 2]
    assert trials_to_wait_for(trials, "other", 3, "search", "cuda:H200") == []
    # another type of machine has a baseline of its own: it does not wait for this one
    assert trials_to_wait_for(trials, "k", 3, "baseline", "cuda:H100") == []


def test_trials_left_running_by_a_worker_that_is_gone_are_failed_and_retried(tmp_path):
    """A machine taken back mid-study leaves RUNNING trials in its journal file. `search --gpus` on the same
    study later fails and retries them before its workers start: a worker of an earlier boot of
    this host, one whose pid no process has, or has but is no autotune worker (a fresh machine reuses pids),
    or is this very process. A live worker's trial, and another host's, are left alone."""
    import socket
    import subprocess
    import sys

    import optuna
    from optuna.trial import TrialState

    from autotune.tuner.coordination import WORKER_ATTR
    from autotune.tuner.handle import StudyHandle
    from autotune.tuner.local_workers import fail_orphaned_trials, process_gone
    from autotune.tuner.shared import boot_id
    from autotune.tuner.storage import journal_storage

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)  # a process that has ended
    # a live process whose command line is a worker's, and a live one that is not
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "autotune.cli", "worker"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = socket.gethostname()
    try:
        workers = {
            "pid gone": {"host": host, "pid": dead_pid, "gpu": "0", "boot": boot_id()},
            "another boot of this host": {"host": host, "pid": worker.pid, "gpu": "1", "boot": "an-earlier-boot"},
            "pid reused by another program": {"host": host, "pid": other.pid, "gpu": "2"},
            "alive": {"host": host, "pid": worker.pid, "gpu": "3", "boot": boot_id()},
            "another host": {"host": host + "-other", "pid": dead_pid, "gpu": "0", "boot": "x"},
        }
        storage = journal_storage(str(tmp_path / "s.log"))
        study = optuna.create_study(study_name="s", storage=storage)
        numbers = {}
        for name, who in workers.items():
            trial = study.ask({"x": optuna.distributions.CategoricalDistribution(["a", "b"])})
            trial.set_user_attr(WORKER_ATTR, who)
            numbers[name] = trial.number
        gone = [name for name in workers if process_gone(workers[name])]
        expected = ["pid gone", "another boot of this host", "pid reused by another program"]
        assert gone == (expected if boot_id() else [n for n in expected if n != "another boot of this host"])
        failed = fail_orphaned_trials(StudyHandle.of(study, storage), max_retry=1)
    finally:
        worker.kill()
        other.kill()
    assert failed == [numbers[name] for name in gone]
    states = {t.number: t.state for t in study.trials}
    assert all(states[numbers[name]] == TrialState.FAIL for name in gone)
    assert states[numbers["alive"]] == states[numbers["another host"]] == TrialState.RUNNING
    retries = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(retries) == len(gone)  # each retried once, with the same params


def test_search_gpus_again_with_more_trials_raises_the_studys_budget(tmp_path, bundled_model):
    """Resuming a study with a higher --trials: the workers, which read the budget from the study, run to the
    new total."""
    from autotune.tuner.shared import create_study, recorded_settings
    from autotune.tuner.study import STUDY_ATTR

    settings = SearchSettings(model=str(bundled_model), workload=Workload(prompts=("def f(x):\n",), max_new_tokens=4),
                              study_name="s", trials=3, device="cpu", root=str(tmp_path / "studies"),
                              storage=str(tmp_path / "studies" / "s.log"))
    create_study(settings)
    events = []
    again = create_study(SearchSettings(**{**settings.__dict__, "trials": 5}),
                         report=lambda event, **info: events.append((event, info)))
    assert again.study.user_attrs[STUDY_ATTR]["settings"]["trials"] == 5
    assert ("budget_changed", {"before": 3, "after": 5}) in events
    assert recorded_settings("s", settings.storage).trials == 5
