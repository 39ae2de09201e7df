"""A study with its storage, and everything the tuner needs of Optuna beyond `Study`'s own methods.

Optuna's `Study` and `Trial` keep their storage and ids private (`study._storage`, `study._study_id`,
`trial._trial_id`). autotune opens the storage itself (`autotune.tuner.storage.storage_for`) and keeps it
here, with the study's id (`storage.get_study_id_from_name`); a trial's id comes from its number
(`storage.get_trial_id_from_study_id_trial_number`). Those are public `BaseStorage` methods. What remains of
Optuna's internals is named here, each with why:

- The trial system attribute "fixed_params": where `Study.enqueue_trial` keeps the params a trial is
  enqueued with. A trial enqueued from outside may fix values this study's space does not take on this
  machine; reading them lets the study record it as an invalid combination instead of crashing in
  `suggest`. Written (with `create_new_trial`) for a baseline that only this worker may run.
- The heartbeat storage's `_get_stale_trial_ids`: Optuna's `fail_stale_trials` fails a stale trial without a
  word, and a finished trial's attributes cannot be set; read first, the stale trials get their
  `failure_kind` while they are still RUNNING, so every failed trial says why.
- The `optuna.Trial(study, trial_id)` constructor: for a trial made with `storage.create_new_trial` (a
  worker's own baseline) and for a RUNNING trial whose orchestrator died after saving its result
  (`Records.reconcile` tells it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from autotune.interrupt import Poll
from autotune.tuner.storage import is_journal

FIXED_PARAMS = "fixed_params"


def fixed_params(trial: FrozenTrial) -> dict:
    """The params a trial was enqueued with (empty for a trial the sampler drew)."""
    return trial.system_attrs.get(FIXED_PARAMS) or {}


@dataclass
class StudyHandle:
    """An open study and its storage."""

    study: optuna.Study
    storage: BaseStorage
    study_id: int

    @classmethod
    def of(cls, study: optuna.Study, storage: BaseStorage) -> "StudyHandle":
        return cls(study, storage, storage.get_study_id_from_name(study.study_name))

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def frozen(self, number: int) -> FrozenTrial:
        """The trial as the storage has it now."""
        return self.storage.get_trial(self.trial_id(number))

    def trial(self, number: int) -> optuna.Trial:
        """A live handle on a RUNNING trial, to set its attributes and tell it."""
        return optuna.Trial(self.study, self.trial_id(number))

    def new_running_trial(self, params: dict) -> optuna.Trial:
        """A RUNNING trial of this process with `params` fixed (no other worker can take it, as it could take
        an enqueued one)."""
        trial_id = self.storage.create_new_trial(self.study_id)
        self.storage.set_trial_system_attr(trial_id, FIXED_PARAMS, params)
        return optuna.Trial(self.study, trial_id)

    def fail_stale_trials(self) -> None:
        """Fail the RUNNING trials whose heartbeat is stale, as `optuna.storages.fail_stale_trials` does (their
        retries enqueued by the storage's callback), each with `failure_kind` "stale" and a message."""
        stale_ids = getattr(self.storage, "_get_stale_trial_ids", None)
        if stale_ids is not None and getattr(self.storage, "get_heartbeat_interval", lambda: None)() is not None:
            for trial_id in stale_ids(self.study_id):
                try:
                    self.storage.set_trial_user_attr(trial_id, "status", "error")
                    self.storage.set_trial_user_attr(trial_id, "failure_kind", "stale")
                    self.storage.set_trial_user_attr(trial_id, "message", "its orchestrator stopped sending "
                                                     "heartbeats (killed, or its machine went away)")
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
        with warnings.catch_warnings():  # Optuna marks fail_stale_trials experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def fail(self, number: int, failure_kind: str) -> bool:
        """Mark a RUNNING trial FAIL with `failure_kind`; False where it ended meanwhile."""
        trial_id = self.trial_id(number)
        try:
            self.storage.set_trial_user_attr(trial_id, "failure_kind", failure_kind)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def retry(self, number: int, max_retry: int) -> None:
        """Enqueue a retry of the FAIL trial `number` with identical params, as Optuna's heartbeat callback
        does for a stale trial (at most `max_retry` retries, counted in `retry_history`)."""
        with warnings.catch_warnings():  # Optuna marks its retry callback experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(self.study, self.frozen(number))


def fail_stale(handle: StudyHandle, settings, report, wait: bool = False) -> None:
    """Fail RUNNING trials whose heartbeat stopped longer than the grace period ago (their orchestrator died) and
    enqueue their retry. With `wait`, first wait out the grace period of RUNNING trials that are not this
    process's, so none is left RUNNING.

    Args:
        handle: the study.
        settings: the study's SearchSettings (grace period, heartbeat interval, storage).
        report: the progress report (`stale` and `waiting_stale` events).
        wait: whether to wait until no trial is left RUNNING (at most the grace period).
    """
    s = settings
    running: set[int] = set()

    def waiting() -> None:
        report("waiting_stale", numbers=sorted(running), grace=s.grace_period,
               heartbeats=not is_journal(s.storage_url))

    poll = Poll(s.grace_period + s.heartbeat_interval + 1, 1.0, on_wait=waiting)
    while True:
        before = {t.number for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        handle.fail_stale_trials()
        running = {t.number for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for number in sorted(before - running):
            report("stale", number=number)
        if not wait or not running or poll.expired():
            return
        poll.wait()
