"""What a search found, in one line: the best configuration against the baseline, or that none beat it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from autotune.config.objective import LABELS, metric_of
from autotune.tuner.study import STUDY_ATTR
from autotune.tuner.trials import best_feasible_trial, role


def baseline_trial(trials):
    """The study's completed baseline trial, or None."""
    return next((t for t in trials if role(t) == "baseline" and t.state == TrialState.COMPLETE
                 and t.value is not None), None)


def confirmation_text(stability: dict | None, best) -> str:
    if not stability or stability.get("trial") != best.number or stability.get("cv") is None:
        return ""
    measured = [v for v in stability["runs"] if v is not None]
    verdict = "stable" if stability["stable"] else "unstable: re-run it, or measure with more --repeats"
    return (f"; re-measured {len(measured)} times: median {stability['median']:.1f} tok/s, CV {stability['cv']:.1%} "
            f"({verdict})")


def outcome_line(study: optuna.Study) -> str:
    """One line on what the study found.

    Args:
        study: a study made by autotune with at least one feasible trial.

    Returns:
        "best: <configuration>, N.NNx the baseline's decode tok/s at top-1 agreement A", or that no configuration
        beat the baseline, with the confirmations' spread where they ran.
    """
    trials = study.get_trials(deepcopy=False)
    best = best_feasible_trial(trials)
    baseline = baseline_trial(trials)
    confirmed = confirmation_text(study.user_attrs.get("stability"), best)
    same = baseline is not None and baseline.number in (best.number, best.user_attrs.get("duplicate_of"))
    if baseline is None or same or best.value <= baseline.value:
        return f"no configuration beat the baseline on this machine; the preset is the baseline{confirmed}"
    if best.user_attrs.get("equivalence_meaningful") is False:
        agreement = "agreement not judged (random weights)"
    else:
        agreement = f"top-1 agreement {best.user_attrs.get('top1_agreement', 0.0):.3f}"
    label = LABELS[metric_of(study.user_attrs.get(STUDY_ATTR) or {})]
    return (f"best: {best.user_attrs.get('config') or 'the baseline'}, {best.value / baseline.value:.2f}x the "
            f"baseline's {label} ({best.value:.1f} against {baseline.value:.1f}) at {agreement}{confirmed}")


def export_lines(path) -> list[str]:
    """What an export says: where the preset went, and for a model folder how to run it."""
    from pathlib import Path

    from autotune.runtime.hints import PRESET_IN_FOLDER

    path = Path(path)
    if path.name != PRESET_IN_FOLDER:
        return [f"preset written to {path}"]
    return [f"model folder written to {path.parent}/ (its preset: {path})",
            f"run it without autotune: AutoModelForCausalLM.from_pretrained({str(path.parent)!r}, "
            "trust_remote_code=True).generate(...)"]

