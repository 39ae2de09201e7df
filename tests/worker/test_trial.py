"""The trial's side of trials side by side: the early-stopping threshold as it is when the trial measures, and the
baseline's reference waited for where the baseline runs beside it."""

from __future__ import annotations

import threading
import time

from autotune.config.candidate import Candidate
from autotune.config.workload import Workload
from autotune.worker.job import Job
from autotune.worker.trial import reference_when_ready, stop_below


def job(tmp_path, **fields) -> Job:
    return Job(model="m", candidate=Candidate(), workload=Workload(prompts=("x",)), device="cpu", role="search",
               reference_path=str(tmp_path / "baseline.pt"), result_path=str(tmp_path / "result.json"), **fields)


def test_the_threshold_is_the_higher_of_the_launchs_and_the_orchestrators_current_one(tmp_path):
    path = tmp_path / "stop-below"
    assert stop_below(job(tmp_path)) is None
    assert stop_below(job(tmp_path, stop_below=10.0, stop_below_path=str(path))) == 10.0  # not written yet
    path.write_text("25.5")
    assert stop_below(job(tmp_path, stop_below=10.0, stop_below_path=str(path))) == 25.5
    assert stop_below(job(tmp_path, stop_below_path=str(path))) == 25.5  # launched before the baseline ended
    assert stop_below(job(tmp_path, stop_below=30.0, stop_below_path=str(path))) == 30.0
    path.write_text("not a number")
    assert stop_below(job(tmp_path, stop_below=10.0, stop_below_path=str(path))) == 10.0


def test_the_reference_is_waited_for_only_where_the_baseline_runs_beside(tmp_path):
    reference = tmp_path / "baseline.pt"
    started = time.monotonic()
    assert reference_when_ready(job(tmp_path)) == reference and time.monotonic() - started < 0.1
    threading.Timer(0.5, reference.write_bytes, args=(b"ref",)).start()
    assert reference_when_ready(job(tmp_path, reference_wait_s=30.0)) == reference
    assert reference.exists() and 0.4 < time.monotonic() - started < 5
