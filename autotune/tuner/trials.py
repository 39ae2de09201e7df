"""What a study's trials say: which are finished, which count toward `--trials`, which are feasible and which
is best, and what configuration a trial not told yet runs. The one place these questions are answered, for
the tuner, the export, the tables and the report alike."""

from __future__ import annotations

import warnings

import optuna
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import FrozenTrial, TrialState

from autotune.config.space import SearchSpace
from autotune.errors import NoFeasibleTrialError
from autotune.tuner.handle import fixed_params

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# statuses of an accident of the run (FAIL, retried), not of the configuration
TRANSIENT = ("error", "timeout", "crash")
# failure kinds of FAIL trials that are facts of the configuration at the study's settings, not accidents: a
# worker killed at --trial-timeout while still compiling compiles as long again on a retry at that timeout
NOT_RETRIED = ("warmup_timeout",)


def role(trial) -> str:
    """baseline, seed-recipe, cover or search (a trial the sampler drew)."""
    return trial.user_attrs.get("role", "search")


def counts_toward_trials(trial) -> bool:
    """Whether a trial, taken alone, is one of the study's `--trials`: every trial but an invalid combination,
    which the sampler drew and the study recorded without a process, in no time. A running trial counts.
    `budget_used` also leaves out failed trials whose retry took their place."""
    return trial.user_attrs.get("failure_kind") != "invalid_combination"


def retried_trial_number(trial) -> int | None:
    """The number of the failed trial that `trial` retries (Optuna's retry bookkeeping), or None."""
    with warnings.catch_warnings():  # Optuna marks its retry bookkeeping experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryFailedTrialCallback.retried_trial_number(trial)


def budget_used(trials, states=None) -> int:
    """How many of `trials` (of `states`, or all) count toward `--trials`: a failed trial whose retry is enqueued
    is replaced by that retry, so an interrupted or crashed trial costs the budget once, when its configuration
    is measured or out of retries, and a retry runs in the run that enqueued it."""
    trials = list(trials)
    retried = {retried_trial_number(t) for t in trials} - {None}
    return sum(1 for t in trials if counts_toward_trials(t) and t.number not in retried
               and (states is None or t.state in states))


def is_feasible(trial: FrozenTrial) -> bool:
    """A COMPLETE trial with a value whose constraints all hold (ran, within memory, agrees with the
    baseline): what may be exported."""
    return (trial.state == TrialState.COMPLETE and trial.value is not None
            and all(v <= 0 for v in trial.constraints.values()))


def best_feasible_trial(trials) -> FrozenTrial:
    """The fastest feasible trial; the earliest among equals. NoFeasibleTrialError where there is none."""
    feasible = [t for t in trials if is_feasible(t)]
    if not feasible:
        raise NoFeasibleTrialError("no trial of this study is feasible (every one failed, ran out of memory, or "
                                   "fell short of the equivalence gate): nothing was exported. Inspect it with "
                                   "'autotune show' or optuna-dashboard, lower --min-agreement, or run more trials")
    return max(feasible, key=lambda t: (t.value, -t.number))


def best_value(study: optuna.Study) -> float | None:
    """Decode tok/s of the best feasible trial so far, None before any."""
    try:
        return best_feasible_trial(study.get_trials(deepcopy=False)).value
    except NoFeasibleTrialError:
        return None


def finished_count(study: optuna.Study) -> int:
    """Finished trials that count toward `--trials`."""
    return budget_used(study.get_trials(deepcopy=False), FINISHED)


def untold_candidate(space: SearchSpace, trial: FrozenTrial):
    """The configuration of a trial not told yet (enqueued or running: its candidate is recorded only when it
    ends), from its enqueued and drawn params; None where they make none of `space` (not drawn yet, or params
    of another space)."""
    params = {**fixed_params(trial), **trial.params}
    try:
        with warnings.catch_warnings():  # FixedTrial warns of a value outside the space (enqueued from outside)
            warnings.simplefilter("ignore")
            return space.suggest(optuna.trial.FixedTrial(params))
    except Exception:  # nothing known about it
        return None
