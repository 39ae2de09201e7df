"""Records: a study's measurements on disk (studies/<study>/results/trial-NNNNN.json) and in Optuna.

The order is always: the measurement is written atomically to disk, then Optuna is told. So a crash
between the two loses nothing: `reconcile` finds results that Optuna never heard of and imports them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.config.gate import Gate
from autotune.config.measurement import METRIC_FIELDS, Measurement
from autotune.config.objective import DEFAULT_METRIC, metric_of
from autotune.files import write_atomic
from autotune.tuner.handle import StudyHandle
from autotune.tuner.trials import NOT_RETRIED


def result_path(study_dir: str | Path, number: int) -> Path:
    return Path(study_dir) / "results" / f"trial-{number:05d}.json"


def trial_attrs(candidate: Candidate, m: Measurement, duplicate_of: int | None) -> dict:
    """The user attrs of a finished trial (what optuna-dashboard shows)."""
    return {
        "status": m.status, "failure_kind": m.failure_kind, "message": m.message,
        "candidate": candidate.to_json(), "candidate_key": candidate.key(), "config": candidate.describe(),
        "duplicate_of": duplicate_of, "equivalence_meaningful": m.equivalence_meaningful,
        "peak_memory_kind": m.peak_memory_kind, "exit_code": m.exit_code,
        **{name: getattr(m, name) for name in METRIC_FIELDS},
    }


def constraint_values(m: Measurement, gate: Gate) -> dict:
    """Optuna constraints (feasible when <= 0): equivalence by the study's gate (under its historical name,
    `top1_agreement`, so that studies of every version keep one set of constraints), and having run at all.
    Random weights give degenerate text: their agreement is recorded but cannot be judged, so the
    agreement constraint holds for them (a trained model is what judges equivalence)."""
    if m.ok:
        return {"top1_agreement": gate.gap(m) if m.equivalence_meaningful else 0.0, "runs": 0.0}
    return {"top1_agreement": gate.min_agreement, "runs": 1.0}


def objective_value(m: Measurement, metric: str = DEFAULT_METRIC) -> float:
    return (getattr(m, metric) or 0.0) if m.ok else 0.0


class Records:
    """A study's measurements: saved under `<study_dir>/results/`, then told to Optuna; reconciled when the
    tell never happened."""

    def __init__(self, handle: StudyHandle, study_dir: str | Path, gate: Gate, max_retry: int,
                 grace_period: float, report: Callable[..., None] | None = None, metric: str = DEFAULT_METRIC):
        self.handle = handle
        self.study = handle.study
        self.study_dir = Path(study_dir)
        self.gate, self.metric = gate, metric  # metric: the Measurement field the study maximizes
        self.max_retry = max_retry
        self.grace_period = grace_period
        self.report = report or (lambda event, **info: None)

    @classmethod
    def of_settings(cls, handle: StudyHandle, settings, report: Callable[..., None] | None = None) -> "Records":
        """The records of the study `settings` (a SearchSettings) describes: its folder, gate and objective."""
        return cls(handle, settings.study_dir, settings.equivalence_gate, settings.max_retry, settings.grace_period,
                   report, settings.objective_metric)

    @staticmethod
    def read(study_dir: str | Path, number: int) -> dict | None:
        path = result_path(study_dir, number)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def load(self, number: int) -> dict | None:
        return self.read(self.study_dir, number)

    def save(self, number: int, candidate: Candidate, m: Measurement, duplicate_of: int | None,
             params: dict, **extra) -> None:
        record = {"trial": number, "candidate": candidate.to_dict(), "duplicate_of": duplicate_of,
                  "params": params, **extra, **m.to_dict()}
        write_atomic(result_path(self.study_dir, number), json.dumps(record, sort_keys=True, indent=1))

    def record(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Write the measurement to disk first, then tell Optuna. A trial failed meanwhile from elsewhere
        cannot be told: its measurement stays on disk and is reconciled at once."""
        self.save(trial.number, candidate, m, duplicate_of, trial.params)
        try:
            self.tell(trial, candidate, m, duplicate_of)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
            if self.handle.frozen(trial.number).state == TrialState.RUNNING:
                raise
            self.report("lost_tell", number=trial.number, error=f"{type(exc).__name__}: {exc}")
            self.reconcile()

    def tell(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Tell Optuna: COMPLETE with constraints for measured and infeasible trials; PRUNED for a trial
        stopped early (its pass's tok/s as intermediate value); FAIL (and a retry
        with identical params, at most `max_retry` times) for transient failures; a failure of NOT_RETRIED
        kinds is final at once."""
        for key, value in trial_attrs(candidate, m, duplicate_of).items():
            trial.set_user_attr(key, value)
        if m.ok or m.infeasible:
            for key, value in constraint_values(m, self.gate).items():
                trial.set_constraint(key, value)
            self.study.tell(trial, objective_value(m, self.metric))
            return
        if m.stopped:  # early stopping: the one pass it ran is its intermediate value, for TPE to rank it
            if getattr(m, self.metric) is not None:
                trial.report(getattr(m, self.metric), step=0)
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        self.study.tell(trial, state=TrialState.FAIL)
        if duplicate_of is None and m.failure_kind not in NOT_RETRIED:
            self.handle.retry(trial.number, self.max_retry)

    def reconcile(self) -> list[int]:
        """Import measurements whose tell never happened. A RUNNING trial with a result on disk older than
        the grace period (its orchestrator died after writing it) is told; a FAIL trial whose result says
        it ran (it was failed from elsewhere, e.g. wrongly marked stale) is imported as a new COMPLETE trial
        with identical params (`reconciled_from`; the old result file gets `reconciled_to`). Returns the
        numbers of the trials now holding them."""
        imported = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
            path = result_path(self.study_dir, t.number)
            record = self.load(t.number)
            if record is None or "reconciled_to" in record:  # (a finished trial's attrs cannot be updated)
                continue
            m, candidate = Measurement.from_dict(record), Candidate.from_dict(record["candidate"])
            # A RUNNING trial is told only once its result is older than the grace period, so a live
            # orchestrator about to tell its own trial is never raced.
            if t.state == TrialState.RUNNING and time.time() - path.stat().st_mtime > self.grace_period:
                self.tell(self.handle.trial(t.number), candidate, m, record.get("duplicate_of"))
                imported.append(t.number)
            elif t.state == TrialState.FAIL and (m.ok or m.infeasible) and t.user_attrs.get("status") is None:
                imported.append(self.import_as_new_trial(t, candidate, m, record))
            else:
                continue
            self.report("reconciled", number=t.number)
        return imported

    def import_as_new_trial(self, failed: optuna.trial.FrozenTrial, candidate: Candidate, m: Measurement,
                            record: dict) -> int:
        attrs = {**failed.user_attrs, **trial_attrs(candidate, m, record.get("duplicate_of")),
                 "reconciled_from": failed.number}
        system = {f"constraints:{k}": v for k, v in constraint_values(m, self.gate).items()}
        self.study.add_trial(optuna.create_trial(
            state=TrialState.COMPLETE, value=objective_value(m, self.metric), params=failed.params,
            distributions=failed.distributions, user_attrs=attrs, system_attrs=system))
        number = self.study.get_trials(deepcopy=False)[-1].number
        self.save(number, candidate, m, record.get("duplicate_of"), failed.params, reconciled_from=failed.number)
        write_atomic(result_path(self.study_dir, failed.number),
                     json.dumps({**record, "reconciled_to": number}, sort_keys=True, indent=1))
        return number


def reconcile_study(study_name: str, storage_url: str, root: str | Path, grace_period: int = 60,
                    report: Callable[..., None] | None = None) -> list[int]:
    """`autotune reconcile`: import results that were written but never told, without running anything.

    Returns:
        The numbers of the trials now holding the imported measurements.
    """
    from autotune.tuner.study import load_handle, recorded

    handle = load_handle(study_name, storage_url)
    attrs = recorded(handle.study)
    return Records(handle, Path(root) / study_name, Gate.of_attrs(attrs), 0, grace_period, report,
                   metric_of(attrs)).reconcile()
