"""Never measuring a configuration twice: a trial whose effective configuration a finished trial already ran
takes that trial's result (`duplicate_of`) instead of launching a worker."""

from __future__ import annotations

from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.config.measurement import Measurement
from autotune.tuner.records import Records
from autotune.tuner.trials import FINISHED, NOT_RETRIED


def earlier_measurement(study: optuna.Study, records: Records, candidate: Candidate, max_retry: int,
                        may_reuse: Callable[[optuna.trial.FrozenTrial], bool] = lambda t: True
                        ) -> tuple[int | None, Measurement | None]:
    """A finished trial of the same effective configuration whose result is reused: a COMPLETE one (or one
    stopped early: PRUNED), or the last FAIL of a configuration that has used up its retries or failed for good
    (autotune.tuner.trials.NOT_RETRIED). Its result file, or, where another host measured it, the figures
    recorded in the trial.

    Args:
        study: the study.
        records: its records (the result files of this host).
        candidate: the configuration about to run.
        max_retry: retries a failed configuration gets before its failure is final.
        may_reuse: whether this trial may take a given earlier trial's result.

    Returns:
        (number of the trial reused, its Measurement), or (None, None).
    """
    key = candidate.key()
    same = [t for t in study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get("candidate_key") == key and t.user_attrs.get("duplicate_of") is None and may_reuse(t)]
    complete = [t for t in same if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in same if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "interrupted"]
    final = len(failed) > max_retry or bool(failed) and failed[-1].user_attrs.get("failure_kind") in NOT_RETRIED
    for t in complete[:1] or (failed[-1:] if final else []):
        record = records.load(t.number) or (t.user_attrs if "status" in t.user_attrs else None)
        if record is not None:
            return t.number, Measurement.from_dict(record)
    return None, None
