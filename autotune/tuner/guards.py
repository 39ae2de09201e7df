"""When a study stops itself: its baseline failed or does not fit, the first configurations after it all
failed (nothing can progress: SystemicFailureError, exit code 4), or the sampler draws nothing but invalid
combinations (the space's rules leave nothing valid: SpaceError)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune.config.measurement import Measurement
from autotune.config.settings import SearchSettings
from autotune.errors import SpaceError, SystemicFailureError
from autotune.tuner.trials import FINISHED, TRANSIENT, role

# Invalid combinations do not count toward --trials; this many drawn in a row means the space has (almost)
# no valid configuration left to draw, and the study stops rather than draw forever.
MAX_INVALID_IN_A_ROW = 100


class Guards:
    """Judges each finished trial for what it says about the whole study."""

    def __init__(self, settings: SearchSettings, reference_path, trial_dir):
        self.settings = settings
        self.reference_path = reference_path  # () -> Path of this machine's baseline reference
        self.trial_dir = trial_dir  # number -> Path of the trial's worker folder
        self.invalid_in_a_row = 0

    def judge(self, study: optuna.Study, trial: optuna.Trial, measurement: Measurement) -> Measurement:
        """Stop the study (SystemicFailureError) where this trial's result shows that nothing can progress."""
        if measurement.status == "oom" and role(trial) == "baseline" and not self.reference_path().exists():
            where = "the --vram budget" if self.settings.vram else "memory"
            raise SystemicFailureError(
                f"the baseline (trial {trial.number}) does not fit in {where}: {measurement.message}. Every trial "
                "is compared with it, so it must run" + (": raise --vram" if self.settings.vram else ""))
        if measurement.status in TRANSIENT:
            self.stop_if_systemic(study, trial, measurement)
        self.count_invalid(measurement)
        return measurement

    def stop_if_systemic(self, study: optuna.Study, trial: optuna.Trial, measurement: Measurement) -> None:
        """The study cannot make progress when its baseline fails, or when the first `--max-initial-failures`
        configurations launched after it all failed (nothing has run at all). A retry of a configuration is not
        a configuration of its own: a configuration that crashes twice says nothing about the others."""
        if role(trial) == "baseline":
            raise SystemicFailureError(
                f"the baseline (trial {trial.number}) failed, so nothing can be compared with it: "
                f"{measurement.failure_kind}: {measurement.message}. Check the model and device; "
                f"the worker log is {Path(self.trial_dir(trial.number)) / 'worker.log'}")
        others = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if role(t) != "baseline"]
        if any(t.user_attrs.get("status") in ("ok", "oom", "unsupported") for t in others):
            return
        failed = {t.user_attrs.get("candidate_key") or t.number for t in others if t.state == TrialState.FAIL}
        if len(failed) >= self.settings.max_initial_failures:
            raise SystemicFailureError(
                f"the first {len(failed)} configurations after the baseline all failed (last: "
                f"{measurement.failure_kind}: {measurement.message}); stopping instead of spending more time. "
                f"Worker logs are under {self.settings.study_dir / 'trials'}")

    def count_invalid(self, measurement: Measurement) -> None:
        """Invalid combinations cost nothing and do not count toward --trials; but a space whose rules leave
        (almost) nothing valid would have the sampler draw forever: stop after MAX_INVALID_IN_A_ROW."""
        invalid = measurement.failure_kind == "invalid_combination"
        self.invalid_in_a_row = self.invalid_in_a_row + 1 if invalid else 0
        if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW:
            raise SpaceError(
                f"the sampler drew {self.invalid_in_a_row} invalid combinations in a row: the rules of the search "
                f"space {self.settings.space!r} leave (almost) no valid configuration; loosen its `invalid` rules "
                "or its knobs' values (`autotune estimate --space ...` lists the valid ones)")
