"""benchmarks/study_wall_time.py: a study's wall time, start-up on the trials' clocks and confirmation, as JSON."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest

from autotune.tuner.confirm import STABILITY_ATTR
from support import load_benchmark

summary = load_benchmark("study_wall_time").summary

START = datetime(2026, 12, 5, 12, 0, 0)


def trial(number, start_s, end_s, value, **attrs):
    t = optuna.trial.create_trial(value=value, user_attrs={"config": f"c{number}", "duplicate_of": None, **attrs})
    t.datetime_start, t.datetime_complete = START + timedelta(seconds=start_s), START + timedelta(seconds=end_s)
    return t


def test_the_summary_tells_started_ahead_from_spawned_and_carries_the_confirmation():
    study = optuna.create_study(direction="maximize")
    figures = dict(load_s=5.0, warmup_s=20.0, measured_s=5.0)
    study.add_trial(trial(0, 0, 50, 60.0, process_s=48.0, wall_s=40.0, startup_s=6.0, **figures))
    study.add_trial(trial(1, 50, 90, 300.0, process_s=41.0, wall_s=40.5, startup_s=0.1, prestarted_s=30.0, **figures))
    study.add_trial(trial(2, 60, 100, 200.0, process_s=41.5, wall_s=40.5, startup_s=0.1, prestarted_s=50.0,
                          **figures))
    study.set_user_attr(STABILITY_ATTR, {"trial": 1, "cv": 0.012, "runs": [299.0, 301.0, 303.0]})
    result = summary(study)
    assert result["trials_finished"] == 3 and result["wall_s_of_the_trials"] == 100.0
    startup = result["startup_on_the_trials_clock"]
    assert startup["spawned"] == {"trials": 1, "median_s": 14.0}
    assert startup["prestarted"]["trials"] == 2 and startup["prestarted"]["median_s"] == pytest.approx(0.85)
    assert startup["prestarted_waiting_median_s"] == 40.0
    assert result["best"]["number"] == 1 and result["confirmation"]["cv"] == 0.012
    assert result["contended"] == [] and result["timed_out"] == []
