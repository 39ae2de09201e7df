"""R26: one SQLite study is run by one process at a time. A second search on the same study database is
refused at once with the holder's pid; the lock dies with its holder (kill -9), so a dead run never blocks the
next."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from faultkit import load, run_search, running_trial_worker, start_search

from autotune.errors import StudyBusyError
from autotune.tuner.storage_guard import lock_study, release_study

HOLD = """
import sys, time
from autotune.tuner.storage_guard import lock_study
lock_study(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_r26_the_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyBusyError, match=f"pid {holder.pid}"):
            lock_study(url)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    lock_study(url)  # the kernel released the dead holder's lock
    lock_study(url)  # re-entrant within one process
    release_study(url)


def test_r26_study_create_waits_its_turn(tmp_path):
    """`study create` (several may start at once) waits for a short holder instead of refusing."""
    url = f"sqlite:///{tmp_path}/s.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace("600", "1.5"), url], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    lock_study(url, wait_s=30)
    assert 0.5 < time.monotonic() - started < 30
    release_study(url)
    holder.wait(timeout=10)


@pytest.mark.slow
def test_r26_two_searches_on_one_sqlite_study(workdir):
    first = start_search(workdir, 2, "--trial-timeout", "120", faults="1:slow15")
    running_trial_worker(workdir, 1)
    started = time.monotonic()
    second = run_search(workdir, 2, timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"pid {first.pid}" in second.stderr and "in use by another autotune process" in second.stderr
    assert "Traceback" not in second.stderr and time.monotonic() - started < 60
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 0, output
    trials = load(workdir).trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)  # nothing measured twice
    rerun = run_search(workdir, 2)  # the first run ended: its lock is gone
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
