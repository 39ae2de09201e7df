"""Where a study's wall time went: measuring, warming up and compiling, or idle, from the trials' records."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest

from autotune.tuner.timeline import startup_on_the_clock, time_shares

START = datetime(2026, 12, 4, 12, 0, 0)


def trial(start_s, end_s, **attrs):
    t = optuna.trial.create_trial(value=1.0, user_attrs=attrs)
    t.datetime_start, t.datetime_complete = START + timedelta(seconds=start_s), START + timedelta(seconds=end_s)
    return t


def test_the_shares_add_up_to_the_wall_time_of_the_trials():
    trials = [
        trial(0, 50, process_s=48.0, wall_s=40.0, load_s=5.0, warmup_s=20.0, measured_s=10.0),
        trial(50, 100, process_s=45.0, wall_s=38.0, load_s=6.0, warmup_s=18.0, measured_s=8.0),
        trial(100, 100, duplicate_of=1, process_s=45.0),  # a duplicate ran nothing
        trial(100, 100),  # recorded before the figures existed, or refused before launch
    ]
    shares = time_shares(trials)
    assert shares.wall_s == 100 and shares.trials == 2
    assert (shares.measured_s, shares.warmup_s, shares.load_s) == (18.0, 38.0, 11.0)
    assert shares.startup_s == pytest.approx(15.0) and shares.worker_rest_s == pytest.approx(11.0)
    assert shares.outside_s == pytest.approx(7.0)
    assert shares.line() == ("wall time of the trials 1.7 min over 2 worker processes: the device measuring 18%, "
                             "warming up and compiling 38%, otherwise idle 44% (loading 11%, process start-up 15%, "
                             "scoring and the rest of the workers 11%, outside the workers 7%)")


def test_start_up_counts_the_imports_inside_the_worker_and_what_a_started_worker_had_left():
    spawned = dict(process_s=48.0, wall_s=40.0, startup_s=6.0, load_s=5.0, warmup_s=20.0, measured_s=5.0)
    ahead = dict(process_s=41.0, wall_s=40.5, startup_s=0.1, load_s=5.0, warmup_s=20.0, measured_s=5.0,
                 prestarted_s=30.0)
    assert startup_on_the_clock(spawned) == pytest.approx(14.0)  # spawn and interpreter 8, imports and CUDA 6
    assert startup_on_the_clock(ahead) == pytest.approx(0.6)  # started up while earlier trials ran
    assert startup_on_the_clock({}) == 0.0
    shares = time_shares([trial(0, 50, **spawned), trial(50, 100, **ahead)])
    assert shares.startup_s == pytest.approx(14.6)
    assert shares.worker_rest_s == pytest.approx(4.0 + 10.4)  # wall_s less start-up, load, warm-up, measured


def test_a_study_without_process_figures_has_no_shares():
    assert time_shares([trial(0, 10, decode_tokens_per_s=5.0)]) is None
    assert time_shares([]) is None


def test_trials_side_by_side_are_judged_by_the_unions_of_their_windows():
    def windowed(start_s, end_s, warmup, measured):
        base = START.timestamp()
        return trial(start_s, end_s, process_s=end_s - start_s, wall_s=end_s - start_s - 2, load_s=5.0,
                     warmup_s=warmup[1] - warmup[0], measured_s=measured[1] - measured[0],
                     windows={"warmup": [base + warmup[0], base + warmup[1]],
                              "measured": [base + measured[0], base + measured[1]]})

    # two trials over the same 60 s: both compile from 10 to 40 s, then measure one after the other
    trials = [windowed(0, 60, (10, 40), (40, 45)), windowed(0, 60, (10, 40), (45, 50))]
    shares = time_shares(trials)
    assert shares.overlapped and shares.wall_s == 60
    assert shares.measured_s == pytest.approx(10.0) and shares.warmup_s == pytest.approx(30.0)
    assert "side by side: the device measuring 17%, warming up and compiling while none measured 50%, neither 33%" \
        in shares.line()
