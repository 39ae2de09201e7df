"""Trials side by side: they overlap, the baseline too, yet never two measure at once; memory bounds how many run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import psutil

import pytest
from optuna.trial import TrialState

from autotune.config.settings import SearchSettings
from autotune.config.workload import Workload
from autotune.errors import SystemicFailureError
from autotune.tuner.loop import Tuner
from autotune.tuner.pipeline import Admission, auto_slots, reservation
from support import ONE_THREAD, ROOT

GiB = 2**30


def test_auto_slots_follow_cores_and_memory():
    h200 = {"device": "cuda", "cpu_count": 16, "total_memory_bytes": 140 * GiB}
    assert auto_slots(h200, 24 * GiB) == 5  # by cores: 16 / 3, and by memory: 0.9 * 140 / 24
    assert auto_slots({**h200, "cpu_count": 8}, 24 * GiB) == 2  # by cores
    assert auto_slots(h200, 60 * GiB) == 2  # by memory: 0.9 * 140 / 60
    assert auto_slots(h200, None) == 1  # each trial may take the whole card
    assert auto_slots({"device": "cpu", "cpu_count": 64}, None) == 1  # on a CPU the measurement is the cores


def test_a_reservation_is_the_estimate_with_a_margin_within_the_budget():
    assert reservation(SimpleNamespace(total=8 * GiB), 24 * GiB) == 10 * GiB
    assert reservation(SimpleNamespace(total=30 * GiB), 24 * GiB) == 24 * GiB
    assert reservation(None, 24 * GiB) == 24 * GiB and reservation(None, None) is None


def test_admission_waits_for_memory_but_never_blocks_a_trial_alone():
    import threading

    pool = Admission(10)
    order = []
    with pool.reserve(8):
        waiting = threading.Thread(target=lambda: pool.reserve(5).__enter__() or order.append("second"))
        waiting.start()
        waiting.join(timeout=0.3)
        assert waiting.is_alive() and not order  # 8 + 5 > 10: waits
    waiting.join(timeout=5)
    assert order == ["second"]
    with Admission(10).reserve(50):  # over the capacity, alone: admitted (the prescreen judged it)
        pass


@pytest.mark.slow
def test_trials_overlap_yet_measure_one_at_a_time(tmp_path, bundled_model, monkeypatch):
    for key, value in ONE_THREAD.items():
        monkeypatch.setenv(key, value)
    settings = SearchSettings(model=str(bundled_model), workload=Workload(prompts=("def f(x):\n",), max_new_tokens=8),
                              study_name="p", trials=6, space=str(ROOT / "tests/data/small_space.yaml"),
                              device="cpu", root=str(tmp_path / "studies"), repeats=2, warmup=1, overlap=2,
                              early_stop=0, confirm=2)  # a 2-core machine's noise is no reason to stop a trial here
    tuner = Tuner(settings)
    study = tuner.run()
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    events = tuner.launcher.lease.events

    # the lease: acquired and released in turn, by one worker at a time, every other worker stopped meanwhile
    turns = [(e.pid, e.what) for e in events if e.what in ("acquired", "released")]
    assert turns[0::2] == [(pid, "acquired") for pid, _ in turns[0::2]]
    assert turns[1::2] == [(pid, "released") for pid, _ in turns[0::2]]
    assert all(e.others_stopped for e in events if e.what == "acquired")
    # trials did run side by side: one started before another had ended
    launched = [t for t in trials if t.user_attrs["duplicate_of"] is None]
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials[1:])
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    # the baseline is the first trial, and the next one started beside it, yet was scored against its reference
    assert trials[0].user_attrs["role"] == "baseline" and trials[1].datetime_start < trials[0].datetime_complete
    assert trials[1].user_attrs["top1_agreement"] is not None
    # each trial in a process of its own, a worker started ahead of it (the baseline's too)
    results = [json.loads((tuner.launcher.trial_dir(t.number) / "result.json").read_text()) for t in launched]
    assert len({r["pid"] for r in results}) == len(results)
    assert all(r["prestarted_s"] > 0 for r in results)
    assert all(t.user_attrs["prestarted_s"] == r["prestarted_s"] for t, r in zip(launched, results))
    # and no worker is left, waiting or not
    started = {e.pid for e in events if e.what == "started"}
    assert len(started) > len(results)  # workers were waiting when the study ended
    assert not [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    # the trials' own timed passes lie within their turns of the lease, and never overlap
    windows = sorted(t.user_attrs["windows"]["measured"] for t in launched)
    held = [(a.at, r.at) for a, r in zip(*(iter([e for e in events if e.what in ("acquired", "released")]),) * 2)]
    assert len(held) == len(windows) >= 3
    assert all(any(start <= w0 and w1 <= end for start, end in held) for w0, w1 in windows)
    assert all(earlier[1] <= later[0] for earlier, later in zip(windows, windows[1:])), (windows, held)

    # the best's confirmations: side by side as well, measuring in turn under the same lease, each in a process
    # of its own that it started (the pool is gone)
    tuner.confirm_and_export(tmp_path / "p.preset.json")
    record = study.user_attrs["stability"]
    assert len(record["runs"]) == 2 and all(v is not None for v in record["runs"])
    confirmed = [json.loads(p.read_text()) for p in sorted((tuner.settings.study_dir / "trials").glob("confirm-*/result.json"))]
    assert len(confirmed) == 2 and confirmed[0]["pid"] != confirmed[1]["pid"]
    pids = {r["pid"] for r in confirmed}
    ran = [e.what for e in tuner.launcher.lease.events if e.pid in pids and e.what in ("started", "ended")]
    assert ran == ["started", "started", "ended", "ended"], ran  # both had started before either ended
    measured = sorted(r["windows"]["measured"] for r in confirmed)
    assert measured[0][1] <= measured[1][0]
    turns = [(e.pid, e.what) for e in tuner.launcher.lease.events if e.what in ("acquired", "released")]
    assert turns[1::2] == [(pid, "released") for pid, _ in turns[0::2]]
    assert all(e.others_stopped for e in tuner.launcher.lease.events if e.what == "acquired")


@pytest.mark.slow
def test_a_failed_baseline_stops_the_trials_started_beside_it(tmp_path, bundled_model, monkeypatch):
    for key, value in {**ONE_THREAD, "AUTOTUNE_ALLOW_FAULTS": "1"}.items():
        monkeypatch.setenv(key, value)
    settings = SearchSettings(model=str(bundled_model), workload=Workload(prompts=("def f(x):\n",), max_new_tokens=8),
                              study_name="p", trials=6, space=str(ROOT / "tests/data/small_space.yaml"),
                              device="cpu", root=str(tmp_path / "studies"), overlap=2, faults=(("0", "error"),))
    tuner = Tuner(settings)
    with pytest.raises(SystemicFailureError, match="baseline"):
        tuner.run()
    trials = tuner.study.get_trials(deepcopy=False)
    assert trials[0].user_attrs["failure_kind"] == "error"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    beside = [t for t in trials[1:] if t.user_attrs.get("role") != "baseline" and t.state != TrialState.WAITING]
    assert all(t.user_attrs["failure_kind"] == "interrupted" for t in beside), [t.user_attrs for t in beside]
    started = {e.pid for e in tuner.launcher.lease.events if e.what == "started"}
    assert not [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
