"""The best's confirmations: one at a time in a sequential study, side by side under the lease in a pipelined one."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from autotune.config.measurement import Measurement
from autotune.tuner.confirm import confirmation_runs, stability


class FakeLauncher:
    """Records how many runs are in flight at once; each run takes `run_s`."""

    def __init__(self, side_by_side: int, lease, run_s: float = 0.3, fail_on: int | None = None):
        self.side_by_side, self.lease, self.run_s, self.fail_on = side_by_side, lease, run_s, fail_on
        self.lock, self.now, self.most, self.jobs = threading.Lock(), 0, 0, []

    def run(self, number, role, candidate, job_name=None):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.jobs.append(job_name)
        try:
            time.sleep(self.run_s)
            if self.fail_on is not None and job_name.endswith(f"-{self.fail_on}"):
                raise RuntimeError("the launcher broke")
            return Measurement(status="ok", decode_tokens_per_s=100.0 + len(self.jobs))
        finally:
            with self.lock:
                self.now -= 1


def test_without_the_lease_confirmations_run_one_at_a_time():
    launcher = FakeLauncher(side_by_side=3, lease=None, run_s=0.05)
    runs = list(confirmation_runs(launcher, 7, None, range(0, 3)))
    assert len(runs) == 3 and launcher.most == 1
    assert launcher.jobs == ["confirm-00007-0", "confirm-00007-1", "confirm-00007-2"]


def test_with_the_lease_they_run_side_by_side_up_to_the_slots():
    launcher = FakeLauncher(side_by_side=2, lease=SimpleNamespace(signal_all=lambda sig: None))
    runs = list(confirmation_runs(launcher, 7, None, range(1, 4)))  # run 0 was done before a stop
    assert len(runs) == 3 and all(m.ok for m in runs)
    assert launcher.most == 2
    assert sorted(launcher.jobs) == ["confirm-00007-1", "confirm-00007-2", "confirm-00007-3"]
    record = stability(SimpleNamespace(number=7, value=101.0), [m.decode_tokens_per_s for m in runs], 3)
    assert record["runs"] and record["median"] is not None and record["stable"]


def test_a_run_that_raises_raises_once_the_others_have_ended():
    launcher = FakeLauncher(side_by_side=3, lease=SimpleNamespace(signal_all=lambda sig: None), fail_on=1)
    ended = []
    with pytest.raises(RuntimeError, match="the launcher broke"):
        for m in confirmation_runs(launcher, 7, None, range(3)):
            ended.append(m)
    assert len(ended) == 2 and launcher.now == 0
