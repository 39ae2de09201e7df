"""Launching a trial's worker: the Job it runs, the folder it writes to, the phases it reports, and the speed
under which it stops early."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from autotune.config.candidate import Candidate
from autotune.config.measurement import Measurement
from autotune.config.settings import SearchSettings
from autotune.files import write_atomic
from autotune.worker.faults import fault_for
from autotune.worker.job import Job
from autotune.worker.launcher import launch


class TrialLauncher:
    """Runs configurations of one study in fresh worker processes.

    `reference_path` is where the baseline's reference is (the study's machine keeps `baseline.pt`; another
    type of machine joining the study has one of its own); `best_value` gives the best decode tok/s so far,
    for early stopping and progress lines."""

    def __init__(self, settings: SearchSettings, model: str, device: str, reference_path: Callable[[], Path],
                 best_value: Callable[[], float | None], report: Callable[..., None]):
        self.settings, self.model, self.device = settings, model, device
        self.reference_path, self.best_value, self.report = reference_path, best_value, report
        self.lease = None  # trials side by side measure under the pipeline's lease (autotune.tuner.lease)
        self.pool = None  # and take workers it started ahead of them (autotune.worker.prestart)
        self.side_by_side = 1  # how many run at once under the lease: the confirmations too (autotune.tuner.confirm)
        # trials side by side with the baseline: a trial launched before its reference exists waits for it to score
        # (a baseline that fails stops the study, and the trials waiting with it)
        self.reference_expected = False

    def trial_dir(self, number: int) -> Path:
        return self.settings.study_dir / "trials" / f"{number:05d}"

    def worker_env(self) -> dict:
        """The variables every worker of the study gets: the study's compiled kernels are kept and shared by its
        trials."""
        return {"TORCHINDUCTOR_CACHE_DIR": str((self.settings.study_dir / "inductor-cache").resolve())}

    def stop_below(self) -> float | None:
        """The objective's tok/s under which a trial stops early: `--early-stop` times the best so far (None: no
        best yet, or early stopping off)."""
        best = self.best_value()
        if not self.settings.early_stop or not best:
            return None
        return self.settings.early_stop * best

    def stop_below_path(self) -> Path:
        return self.settings.study_dir / "trials" / "stop-below"

    def publish_stop_below(self, threshold: float | None) -> str | None:
        """Write the early-stopping threshold as it is now, for trials side by side to read when they reach their
        measurement (autotune.worker.trial.stop_below).

        Args:
            threshold: `stop_below()` as it is now (None: no best yet, nothing is written).

        Returns:
            The file's path, or None where trials do not run side by side or early stopping is off.
        """
        if self.lease is None or not self.settings.early_stop:
            return None
        path = self.stop_below_path()
        if threshold is not None:
            write_atomic(path, repr(threshold))
        return str(path.resolve())

    def run(self, number: int, role: str, candidate: Candidate, job_name: str | None = None) -> Measurement:
        """Measure `candidate` as trial `number` in a fresh worker. A confirmation run (`job_name`: its own
        folder) runs to the end, unreported phase by phase; so does the baseline, which makes the reference.

        Returns:
            The worker's Measurement, or one that says why it has none (no baseline, timeout, crash).
        """
        s = self.settings
        reference = self.reference_path()
        scored_later = role != "baseline" and not reference.exists()  # the baseline runs beside it, or is gone
        if scored_later and not self.reference_expected:
            return Measurement.failed("error", "no_baseline", f"the baseline reference {reference} is missing; "
                                      "start the study over with --new-study")
        job_dir = s.study_dir / "trials" / job_name if job_name else self.trial_dir(number)
        stop_below = None if job_name or role == "baseline" else self.stop_below()
        job = Job(model=self.model, candidate=candidate, workload=s.workload, device=self.device,
                  role="baseline" if role == "baseline" else "candidate", reference_path=str(reference.resolve()),
                  result_path=str(job_dir.resolve() / "result.json"), repeats=s.repeats, warmup=s.warmup,
                  trial_number=number, fault=fault_for(s.faults, number, candidate, confirmation=bool(job_name)),
                  budget_bytes=s.vram, stop_below=stop_below, stop_metric=s.objective_metric,
                  stop_below_path=None if job_name or role == "baseline" else self.publish_stop_below(stop_below),
                  reference_wait_s=s.trial_timeout if scored_later else 0.0)
        env = self.worker_env()

        def on_phase(phase: str) -> None:
            self.report("phase", number=number, role=role, phase=phase, best=self.best_value())

        return launch(job, job_dir, s.trial_timeout, env=env, on_phase=None if job_name else on_phase,
                      lease=self.lease, pool=None if job_name else self.pool)
