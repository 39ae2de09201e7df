"""The launcher's side of trials side by side: the early-stopping threshold published for trials in flight."""

from __future__ import annotations

from pathlib import Path

from autotune.config.settings import SearchSettings
from autotune.config.workload import Workload
from autotune.tuner.launching import TrialLauncher


def launcher(tmp_path, best, early_stop=0.5) -> TrialLauncher:
    settings = SearchSettings(model="m", workload=Workload(prompts=("x",)), study_name="s", device="cpu",
                              root=str(tmp_path), early_stop=early_stop)
    return TrialLauncher(settings, "m", "cpu", lambda: tmp_path / "baseline.pt", lambda: best[0], lambda *a, **k: None)


def test_the_threshold_is_published_as_the_best_improves_where_trials_run_side_by_side(tmp_path):
    best = [None]
    sequential = launcher(tmp_path, best)
    # one trial at a time: the threshold of its launch is current
    assert sequential.publish_stop_below(sequential.stop_below()) is None
    side_by_side = launcher(tmp_path, best)
    side_by_side.lease = object()
    path = Path(side_by_side.publish_stop_below(side_by_side.stop_below()))
    assert not path.exists()  # no best yet (the baseline runs): nothing to stop under
    best[0] = 100.0
    side_by_side.publish_stop_below(side_by_side.stop_below())
    assert float(path.read_text()) == 50.0
    best[0] = 300.0
    side_by_side.publish_stop_below(side_by_side.stop_below())
    assert float(path.read_text()) == 150.0
    off = launcher(tmp_path, best, early_stop=0)
    off.lease = object()
    assert off.publish_stop_below(off.stop_below()) is None
