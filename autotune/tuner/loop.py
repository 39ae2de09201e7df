"""The study loop: an Optuna study over Candidates, each measured in a fresh worker process.

    prepare: probe the machine -> the space it searches -> the prescreen -> open (or resume) the study
    run:     reconcile -> fail stale trials -> seeds -> loop:
             ask -> suggest a Candidate -> prescreen (invalid / over budget) -> reuse a duplicate or launch
             -> write the Measurement under <root>/<study>/results/ -> tell Optuna -> judge

Trial states (../shared/RELIABILITY.md): `ok` -> COMPLETE with decode tok/s as value and the agreement
constraint; infeasible (`oom`, `unsupported`, an invalid combination) -> COMPLETE with value 0 and a violated
constraint, so the sampler learns to avoid it; transient (`error`, `timeout`, `crash`, a CUDA error, an
interrupted trial) -> FAIL with a `failure_kind`, retried with identical params; systemic -> the study stops.

How a study is shared by several workers is not the loop's business: it is given a coordination object
(`autotune.tuner.coordination`), `Solo` for one process, `Shared` for a worker of a study made beforehand.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

import optuna

from autotune.config import models
from autotune.config.candidate import Candidate
from autotune.config.measurement import Measurement
from autotune.config.settings import SearchSettings, default_preset_path
from autotune.config.space import SearchSpace
from autotune.interrupt import check as check_interrupt
from autotune.tuner import confirm, machine, seeds, trials
from autotune.tuner.coordination import Solo
from autotune.tuner.coverage import Covering
from autotune.tuner.guards import Guards
from autotune.tuner.handle import StudyHandle, fail_stale, fixed_params
from autotune.tuner.launching import TrialLauncher
from autotune.tuner.pipeline import Pipeline, auto_slots, reservation
from autotune.tuner.prescreen import Prescreen
from autotune.tuner.records import Records
from autotune.tuner.reuse import earlier_measurement
from autotune.tuner.storage import Heartbeat, storage_unavailable
from autotune.tuner.study import open_study, study_attrs


def silent(event: str, **info) -> None:
    """A report that shows nothing."""


def interruption(reason: BaseException) -> BaseException:
    """A fresh exception of the kind that stopped the study, for a trial of another thread to end with: the
    signal's own, or SystemExit(1) where another trial's error stopped it."""
    if isinstance(reason, KeyboardInterrupt):
        return KeyboardInterrupt()
    return SystemExit(reason.code if isinstance(reason, SystemExit) else 1)


def stopped_by(stop: BaseException) -> str:
    if isinstance(stop, KeyboardInterrupt):
        return "Ctrl-C"
    return "SIGTERM" if isinstance(stop, SystemExit) and stop.code == 143 else "another trial's failure"


class Tuner:
    """Runs one study: the Python API of `autotune search`.

        tuner = Tuner(SearchSettings(model=..., workload=Workload.default(), study_name="demo"))
        study = tuner.run()                      # prepares, then runs the trials
        preset_path = tuner.confirm_and_export()
    """

    def __init__(self, settings: SearchSettings, report: Callable[..., None] | None = None, coordination=None,
                 space: SearchSpace | None = None):
        """
        Args:
            settings: what the study runs with (autotune.config.settings.SearchSettings).
            report: receives progress events, `report(event, **info)` (autotune.present.progress); none by default.
            coordination: how the study is shared (autotune.tuner.coordination); `Solo()` by default.
            space: the space to search instead of the settings' file (a joining worker's recorded one).
        """
        self.settings = settings
        self.report = report or silent
        self.coordination = coordination or Solo()
        self.model = models.resolve_model(settings.model)
        self.assistant = models.resolve_model(settings.assistant) if settings.assistant else None
        self.base_space = space  # a study's recorded space (a joining worker); else the settings' file
        self.environment: dict = {}
        self.space: SearchSpace | None = None
        self.handle: StudyHandle | None = None
        self.created = False  # whether prepare() made the study
        # trials side by side (autotune.tuner.pipeline): the study's lock, what stops them, the memory they wait for
        self.lock, self.stop_reason, self.admission = threading.RLock(), None, None

    @property
    def study(self) -> optuna.Study | None:
        return self.handle.study if self.handle else None

    # ---- setup -----------------------------------------------------------------------------------

    def prepare(self) -> optuna.Study:
        """Probe the machine, derive the space and the prescreen, open (or resume) the study; fails fast on bad
        input (InputError, StudyMismatchError).

        Returns:
            The Optuna study.
        """
        s = self.settings
        base = self.base_space or SearchSpace.load(s.space)  # a bad file fails here, before anything starts
        self.report("probe", device=s.device)
        self.environment = machine.probe(s.device)
        self.space = machine.searched_space(base, self.environment, s.workload, self.assistant, self.model)
        self.prescreen = Prescreen.for_study(self.space, self.model, s.workload, self.assistant,
                                             self.environment["device"], s.vram)
        attrs = study_attrs(s, self.model, self.assistant, self.space, self.environment)
        self.handle, self.created = open_study(s, attrs, self.coordination.sampler(s.seed), self.coordination.mode,
                                               self.report, self.space.left_out, self.coordination.may_differ)
        self.coordination.attach(self)
        self.records = Records.of_settings(self.handle, s, self.report)
        self.launcher = TrialLauncher(s, self.model, self.environment["device"], self.coordination.reference_path,
                                      self.best_value, self.report)
        self.guards = Guards(s, self.coordination.reference_path, self.launcher.trial_dir)
        self.covering = Covering(self.space, s.trials, s.seed, self.assistant, self.prescreen.fits) if s.cover else None
        return self.study

    # ---- the loop --------------------------------------------------------------------------------

    def run(self) -> optuna.Study:
        """Run trials until the coordination says the study's budget is spent (and none is left RUNNING).

        Returns:
            The Optuna study. Raises SystemicFailureError where nothing can progress, SpaceError where the
            space leaves nothing valid.
        """
        if self.handle is None:
            self.prepare()
        self.records.reconcile()
        self.fail_stale_trials()
        if self.coordination.enqueues_seeds:
            self.enqueue_seeds()
        # trials side by side: --overlap, or as many as the machine allows; one in a shared study's worker
        slots = (self.settings.overlap or auto_slots(self.environment, self.settings.vram)) \
            if self.coordination.enqueues_seeds else 1
        if slots > 1:
            self.report("overlap", slots=slots)
            Pipeline(self, slots).run()
        while not self.coordination.done():
            self.step()
        return self.study

    def enqueue_seeds(self) -> None:
        seeds.enqueue_seeds(self.study, self.space)

    def step(self) -> Measurement:
        """Ask for one trial, run it, and stop the study if it shows that nothing can progress."""
        check_interrupt()  # a Ctrl-C / SIGTERM noted between trials stops here, before a trial is asked for
        with self.lock:
            if self.covering is not None:
                self.covering.enqueue_next(self.study)
            trial = self.study.ask()
        measurement = self.run_trial(trial)
        with self.lock:
            return self.guards.judge(self.study, trial, measurement)

    def run_trial(self, trial: optuna.Trial) -> Measurement:
        """Run one asked trial to a told Measurement: prescreened, reused, or measured by a worker."""
        with Heartbeat(self.handle.storage, self.handle.trial_id(trial.number)):
            with self.lock:
                role = trials.role(trial)
                if role == "search":
                    trial.set_user_attr("role", role)
                self.coordination.on_trial_start(trial)
                candidate, outside = self.prescreen.suggest(trial, fixed_params(self.handle.frozen(trial.number)))
            self.report("start", number=trial.number, total=self.settings.trials, role=role, candidate=candidate)
            estimate = self.prescreen.estimate(candidate)
            duplicate_of = None
            measurement = self.prescreen.verdict(candidate, role, outside, estimate)
            if measurement is None:
                duplicate_of, measurement = self.reuse_or_launch(trial, role, candidate, estimate)
            if estimate is not None:
                measurement = replace(measurement, estimated_memory_bytes=estimate.total,
                                      memory_estimate=estimate.to_dict())
            self.record(trial, candidate, measurement, duplicate_of)
        self.report("end", number=trial.number, total=self.settings.trials, role=role, candidate=candidate,
                    measurement=measurement, duplicate_of=duplicate_of, best=self.best_value())
        return measurement

    def reuse_or_launch(self, trial: optuna.Trial, role: str, candidate: Candidate, estimate=None
                        ) -> tuple[int | None, Measurement]:
        """An earlier trial's result of the same configuration, or a fresh measurement (once `estimate` fits)."""
        self.coordination.before_reuse(trial, candidate, role)
        duplicate_of, measurement = earlier_measurement(
            self.study, self.records, candidate, self.settings.max_retry,
            lambda earlier: self.coordination.may_reuse(earlier, role))
        if measurement is not None:
            return duplicate_of, measurement
        estimate = None if role == "baseline" else estimate  # the whole budget: float32 scoring is beyond the estimate
        admitted = self.admission.reserve(reservation(estimate, self.settings.vram)) if self.admission else nullcontext()
        try:
            self.coordination.before_launch(trial.number, role)
            with admitted:
                measurement = self.launcher.run(trial.number, role, candidate)
            if self.stop_reason is not None:  # its worker was killed because the study stops
                raise interruption(self.stop_reason)
            return None, measurement
        except (KeyboardInterrupt, SystemExit) as stop:
            # Ctrl-C / SIGTERM: the launcher killed the worker; mark the trial and stop.
            self.record(trial, candidate, Measurement.failed(
                "error", "interrupted", f"the study was stopped ({stopped_by(stop)}) during this trial"), None)
            raise

    def record(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Save the measurement, then tell the study (autotune.tuner.records), as the coordination allows."""
        with self.lock:
            self.coordination.record(lambda: self.records.record(trial, candidate, m, duplicate_of), trial, m)

    def fail_stale_trials(self, wait: bool = False) -> None:
        """Fail RUNNING trials whose orchestrator died and enqueue their retries (autotune.tuner.handle.fail_stale;
        with `wait`, none is left RUNNING)."""
        fail_stale(self.handle, self.settings, self.report, wait)

    # ---- what the study says ---------------------------------------------------------------------

    def finished_count(self) -> int:
        return trials.finished_count(self.study)

    def best_value(self) -> float | None:
        """The best decode tok/s so far, for progress lines and the early-stop threshold: None before any, and
        while the storage cannot be read (a trial runs on through an outage; its tell waits for the storage)."""
        try:
            return trials.best_value(self.study)
        except Exception as exc:
            if storage_unavailable(exc):
                return None
            raise

    def trial_dir(self, number: int) -> Path:
        return self.launcher.trial_dir(number)

    def reference_path(self) -> Path:
        return self.coordination.reference_path()

    def reconcile(self) -> list[int]:
        return self.records.reconcile()

    # ---- the best configuration ------------------------------------------------------------------

    def confirm_and_export(self, out: str | Path | None = None) -> Path:
        """Export the best feasible trial as a preset, re-measured `--confirm` times (autotune.tuner.confirm).

        Args:
            out: the preset's path (default: `<root>/<study>.preset.json`).

        Returns:
            The preset's path. Raises NoFeasibleTrialError where no trial is feasible.
        """
        return confirm.confirm_and_export(self.study, self.settings, self.launcher, self.report,
                                          out or default_preset_path(self.settings.root, self.settings.study_name))

    def export(self, out: str | Path | None = None) -> Path:
        """Export the best feasible trial as a preset, as recorded (no confirmation)."""
        return confirm.export_study(self.study, out or default_preset_path(self.settings.root,
                                                                           self.settings.study_name),
                                    self.settings.study_dir)
