"""How a study loop shares its study: the object the loop (autotune.tuner.loop.Tuner) is given.

`Solo`: one process runs the study (`autotune search`, `autotune study create`). `Shared`: a worker of a study
made beforehand, beside other workers on one host or many (`autotune worker`, R12-R15 of
../shared/RELIABILITY.md):

- the budget is the study's total over all workers (Optuna's `MaxTrialsCallback(n, states=None)` rule);
- each worker waits for the study's one baseline instead of measuring its own: the reference is shared
  through the study (a user attribute per type of machine), so a worker on another host fetches it; a
  worker on another type of device measures a baseline of its own, once for all the workers of its type;
- a configuration another worker is measuring right now is waited for and reused (`duplicate_of`);
- a storage outage (a database server restarting) is outlasted: the result is on disk, and the tell is
  tried again until the server is back.
"""

from __future__ import annotations

import base64
import warnings
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.config.measurement import Measurement
from autotune.errors import StorageUnavailableError, SystemicFailureError
from autotune.files import write_atomic
from autotune.interrupt import Poll, pause
from autotune.tuner.machine import fingerprint
from autotune.tuner.storage import storage_unavailable
from autotune.tuner.study import recorded
from autotune.tuner.trials import budget_used, finished_count, role

WORKER_ATTR = "worker"  # trial user attr: which worker runs it ({host, pid, gpu, boot})
MACHINE_ATTR = "machine"  # trial user attr: the fingerprint of the machine type it ran on
REFERENCE_ATTR = "baseline_reference:"  # study user attr prefix, + machine fingerprint: the reference, base64
POLL_S = 1.0
OUTAGE_RETRY_S = 2.0


class Solo:
    """One process runs the study: it makes or resumes it, enqueues its seeds, and runs to `--trials`
    finished trials. `mode` "create_once" makes the study only if no other process made it (study create)."""

    may_differ: tuple[str, ...] = ()  # recorded attributes a resumed study may have changed
    enqueues_seeds = True

    def __init__(self, mode: str = "create_or_load"):
        self.mode = mode
        self.tuner = None
        self._study_machine: str | None = None

    def attach(self, tuner) -> None:
        self.tuner = tuner

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """TPE, seeded; with the constant liar, so that trials run side by side (--overlap) are not proposed
        again while they run. Alone, no other trial runs when one is asked: the liar changes nothing."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    @property
    def machine(self) -> str:
        return fingerprint(self.tuner.environment)

    @property
    def study_machine(self) -> str | None:
        """The machine type the study was made on (recorded when it was made: read once)."""
        if self._study_machine is None:
            self._study_machine = recorded(self.tuner.study).get("machine_fingerprint")
        return self._study_machine

    def done(self) -> bool:
        """`--trials` trials finished; then trials left RUNNING by another run of the study are waited out (failed
        once their heartbeat is stale, their retries enqueued), so none is left RUNNING."""
        if finished_count(self.tuner.study) < self.tuner.settings.trials:
            return False
        self.tuner.fail_stale_trials(wait=True)
        return True

    def on_trial_start(self, trial: optuna.Trial) -> None:
        pass

    def before_reuse(self, trial: optuna.Trial, candidate: Candidate, role: str) -> None:
        pass

    def before_launch(self, number: int, role: str) -> None:
        pass

    def machine_of(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """The machine type a trial ran on; None for one not started yet (it may become anyone's). A
        finished trial that does not say (run by a single process) ran on the study's machine."""
        if MACHINE_ATTR in trial.user_attrs:
            return trial.user_attrs[MACHINE_ATTR]
        return None if trial.state in (TrialState.WAITING, TrialState.RUNNING) else self.study_machine

    def may_reuse(self, earlier: optuna.trial.FrozenTrial, trial_role: str) -> bool:
        """Whether a trial of `trial_role` may take the result of `earlier` (same configuration): a baseline
        only a baseline's of the same type of machine, which made the reference."""
        return trial_role != "baseline" or (role(earlier) == "baseline" and self.machine_of(earlier) == self.machine)

    def reference_path(self) -> Path:
        """The study's machine keeps `baseline.pt`; another type of machine has a file of its own (two types
        of GPU in one host share the study's folder)."""
        study_dir = self.tuner.settings.study_dir
        if self.machine == self.study_machine:
            return study_dir / "baseline.pt"
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.machine)
        return study_dir / f"baseline-{slug}.pt"

    def record(self, save_and_tell: Callable[[], None], trial: optuna.Trial, m: Measurement) -> None:
        save_and_tell()


class Shared(Solo):
    """A worker of a study made beforehand (`autotune study create`), sharing it with other workers."""

    may_differ = ("machine_fingerprint",)  # a worker may run on another type of device (its own baseline)
    enqueues_seeds = False

    def __init__(self, identity: dict):
        super().__init__(mode="load")
        self.identity = identity  # {host, pid, gpu, boot}: recorded in each trial it runs

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """TPE with the constant liar (running trials count as bad ones, so parallel workers spread out),
        seeded differently in every worker: the same seed everywhere would propose the same points."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(constant_liar=True, seed=None)

    def done(self) -> bool:
        """Optuna's MaxTrialsCallback(n, states=None) rule: every trial of the study counts, whichever worker
        runs it, but the sampler's invalid combinations. Trials enqueued (retries) are still run, so none is
        left WAITING. Workers that check at the same moment may each start one more."""
        study = self.tuner.study
        started = budget_used(study.get_trials(deepcopy=False))
        if started < self.tuner.settings.trials or self.waiting():
            return False
        self.tuner.fail_stale_trials(wait=True)  # a dead worker's trial: failed and its retry enqueued
        return not self.waiting()

    def waiting(self) -> list:
        return self.tuner.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

    def on_trial_start(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(WORKER_ATTR, self.identity)
        trial.set_user_attr(MACHINE_ATTR, self.machine)

    def before_reuse(self, trial: optuna.Trial, candidate: Candidate, trial_role: str) -> None:
        """Make the configuration known to the other workers, and wait for what its result depends on: the
        reference (a search trial of the baseline's configuration then reuses the baseline's result), and the
        same configuration running now in an earlier trial of another worker."""
        trial.set_user_attr("candidate_key", candidate.key())
        if trial_role != "baseline":
            self.wait_for_reference(trial.number)
        self.wait_for_same_running(candidate.key(), trial.number, trial_role)

    def before_launch(self, number: int, trial_role: str) -> None:
        if trial_role != "baseline":
            self.wait_for_reference(number)

    def wait_for_same_running(self, key: str, number: int, trial_role: str) -> None:
        s = self.tuner.settings
        running: list[int] = []
        poll = Poll(s.trial_timeout + s.grace_period, POLL_S,
                    on_wait=lambda: self.tuner.report("waiting_same", number=number, other=running[0]))
        while not poll.expired():
            running = trials_to_wait_for(self.tuner.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
                                         key, number, trial_role, self.machine)
            if not running:
                return
            poll.wait()
            self.tuner.fail_stale_trials()  # a dead worker's trial is not waited for

    # ---- one baseline per type of machine ---------------------------------------------------------

    def wait_for_reference(self, number: int) -> None:
        """A candidate is compared with the baseline of its type of machine: wait until it is measured (by
        whichever worker took it), taking its reference from the study when this host has no copy. Where
        the study has none for this type of machine, measure it here first."""
        s = self.tuner.settings
        poll = Poll(s.trial_timeout + s.grace_period, POLL_S,
                    on_wait=lambda: self.tuner.report("waiting_baseline", number=number))
        while not self.reference_path().exists() and not self.fetch_reference():
            if not self.own_baselines():
                self.measure_own_baseline()
                poll.restart()
                continue
            self.stop_if_baseline_failed()
            if poll.expired():
                return  # the launcher records the missing reference as this trial's failure
            poll.wait()
            self.tuner.fail_stale_trials()

    def own_baselines(self) -> list:
        """The baseline trials that are, or may become, this machine type's."""
        return [t for t in self.tuner.study.get_trials(deepcopy=False) if role(t) == "baseline"
                and self.machine_of(t) in (None, self.machine)]

    def measure_own_baseline(self) -> Measurement:
        """A baseline trial for this type of machine, made and run here at once (not enqueued: a worker on
        another type could take it)."""
        trial = self.tuner.handle.new_running_trial(self.tuner.space.params_of(Candidate()))
        trial.set_user_attr("role", "baseline")
        self.tuner.report("own_baseline", number=trial.number, machine=self.machine)
        return self.tuner.guards.judge(self.tuner.study, trial, self.tuner.run_trial(trial))

    def fetch_reference(self) -> bool:
        encoded = self.tuner.study.user_attrs.get(REFERENCE_ATTR + self.machine)
        if encoded is None:
            return False
        path = write_atomic(self.reference_path(), base64.b64decode(encoded))
        self.tuner.report("fetched_baseline", path=str(path))
        return True

    def publish_reference(self) -> None:
        self.tuner.study.set_user_attr(REFERENCE_ATTR + self.machine,
                                       base64.b64encode(self.reference_path().read_bytes()).decode("ascii"))

    def baseline_pending(self) -> tuple[bool, list]:
        """Whether this machine type's baseline is still to come (enqueued, running, or measured with its
        reference on its way), and its baseline trials."""
        baselines = self.own_baselines()
        pending = any(t.state in (TrialState.WAITING, TrialState.RUNNING) or
                      (t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "ok") for t in baselines)
        return pending, baselines

    def stop_if_baseline_failed(self) -> None:
        pending, baselines = self.baseline_pending()
        if not pending:
            # a dead worker's baseline is failed first and its retry enqueued just after: look again
            pause(2 * POLL_S)
            pending, baselines = self.baseline_pending()
        if pending:
            return
        last = baselines[-1] if baselines else None
        raise SystemicFailureError(
            "the study's baseline " + (f"(trial {last.number}) failed ({last.user_attrs.get('failure_kind')}: "
                                       f"{last.user_attrs.get('message')})" if last else "was never enqueued")
            + ", so nothing can be compared with it: check the model and device, then make the study again "
            "with 'autotune study create --new-study'")

    def record(self, save_and_tell: Callable[[], None], trial: optuna.Trial, m: Measurement) -> None:
        """Save and tell, outlasting a storage outage; a baseline's reference is then published to the study."""
        limit = self.tuner.settings.trial_timeout
        outlast_outage(save_and_tell, limit, lambda: self.tuner.report("storage_down", number=trial.number))
        if role(trial) == "baseline" and m.ok and self.reference_path().exists():
            outlast_outage(self.publish_reference, limit, lambda: None)


def trials_to_wait_for(running: list, key: str, number: int, trial_role: str, machine: str) -> list[int]:
    """The running trials (earlier than `number`, same configuration) whose result a trial waits for and
    reuses. A baseline waits for baselines of its type of machine only: a search trial of the same
    configuration cannot finish before the baseline does (it is compared with the baseline's reference),
    so waiting for it would be a deadlock, and its result is no reference; nor is another machine's."""
    return [t.number for t in running if t.number < number and t.user_attrs.get("candidate_key") == key
            and (trial_role != "baseline" or (role(t) == "baseline" and t.user_attrs.get(MACHINE_ATTR) == machine))]


def outlast_outage(action: Callable[[], None], limit_s: float, on_outage: Callable[[], None]) -> None:
    """Run `action`, again every few seconds while the storage cannot be reached, for at most `limit_s`;
    then StorageUnavailableError (the measurement is on disk: `autotune reconcile` imports it later)."""
    poll = Poll(limit_s, OUTAGE_RETRY_S, on_wait=on_outage)
    while True:
        try:
            return action()
        except Exception as exc:
            if not storage_unavailable(exc):
                raise
            if poll.expired():
                raise StorageUnavailableError(
                    f"the storage could not be reached for {limit_s:g} s ({type(exc).__name__}); the measurement "
                    "is saved under the study's results/: once the storage is back, start the worker again or "
                    "run 'autotune reconcile' to import it") from None
            poll.wait()
