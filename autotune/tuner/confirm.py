"""The best configuration, confirmed: re-measured `--confirm` times in fresh processes, its coefficient of
variation recorded (R23 of ../shared/RELIABILITY.md), and the preset written before and after."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

import optuna

from autotune.config.objective import DEFAULT_METRIC
from autotune.config.candidate import Candidate
from autotune.config.settings import SearchSettings
from autotune.errors import NoFeasibleTrialError
from autotune.tuner.export import STABILITY_ATTR, export_study
from autotune.tuner.launching import TrialLauncher
from autotune.tuner.trials import best_feasible_trial

# coefficient of variation of the re-measured objective (decode tok/s unless --objective says otherwise) under
# which a preset is stable
STABLE_CV = 0.05


def stability(best, values: list[float | None], n: int, metric: str = DEFAULT_METRIC) -> dict:
    """The confirmations so far of trial `best` out of `n` (their `metric`, the study's objective): their median
    and coefficient of variation; stable once all `n` ran with a CV under STABLE_CV."""
    measured = [v for v in values if v is not None]
    cv = statistics.pstdev(measured) / statistics.fmean(measured) if len(measured) >= 2 else None
    return {"trial": best.number, "metric": metric, "runs": values, "recorded": best.value,
            "median": statistics.median(measured) if measured else None, "cv": cv,
            "stable": cv is not None and cv < STABLE_CV and len(measured) == n}


def confirm_best(study: optuna.Study, n: int, launcher: TrialLauncher, report: Callable[..., None]) -> dict | None:
    """Re-measure the best feasible configuration `n` times in fresh processes. Kept in the study after every
    run (reused while the best trial stays the same: a study stopped during its confirmations resumes them
    where they stopped) and carried into the preset.

    Returns:
        The stability record (see `stability`), or None where no trial is feasible.
    """
    try:
        best = best_feasible_trial(study.get_trials(deepcopy=False))
    except NoFeasibleTrialError:
        return None
    earlier = study.user_attrs.get(STABILITY_ATTR)
    same = bool(earlier) and earlier.get("trial") == best.number
    if n == 0 or (same and len(earlier.get("runs", [])) >= n):
        return earlier
    candidate = Candidate.from_json(best.user_attrs["candidate"])
    values = list(earlier["runs"]) if same else []
    report("confirm", number=best.number, runs=n - len(values))
    for i in range(len(values), n):
        m = launcher.run(best.number, "confirm", candidate, job_name=f"confirm-{best.number:05d}-{i}")
        values.append(getattr(m, launcher.settings.objective_metric) if m.ok else None)
        record = stability(best, values, n, launcher.settings.objective_metric)
        study.set_user_attr(STABILITY_ATTR, record)
    report("confirmed", **record)
    return record


def confirm_and_export(study: optuna.Study, settings: SearchSettings, launcher: TrialLauncher,
                       report: Callable[..., None], out: str | Path) -> Path:
    """The preset, then the confirmations, then the preset again with their stability: a run that ends
    during the confirmations keeps a preset, and a rerun resumes them.

    Returns:
        The preset's path.
    """
    if settings.confirm:
        export_study(study, out, settings.study_dir)
        confirm_best(study, settings.confirm, launcher, report)
    return export_study(study, out, settings.study_dir)
