"""What a trial is judged on before any process starts: its configuration as this study's space draws it, the
rules it must not break, and its estimated memory against the `--vram` budget.

A combination the space marks invalid, values enqueued from outside that this space does not take on this
machine, and a candidate estimated over the budget are recorded as infeasible without a process: they cost
nothing, and the sampler learns from them. The baseline is always launched whatever its estimate: it is the
reference every trial is compared with, so a real measurement decides.
"""

from __future__ import annotations

import optuna

from autotune.config.candidate import KNOBS, Candidate
from autotune.config.measurement import Measurement
from autotune.config.space import SearchSpace
from autotune.config.workload import Workload
from autotune.errors import CandidateError, InputError
from autotune.memory import Estimator, MemoryEstimate, over_budget_message
from autotune.memory.context import check_prompts_fit
from autotune.worker import faults


class Prescreen:
    """The checks a candidate passes before launch, for one study."""

    def __init__(self, space: SearchSpace, estimator: Estimator | None, vram: int | None, device: str,
                 assistant: str | None):
        self.space, self.estimator, self.vram, self.device, self.assistant = space, estimator, vram, device, assistant

    @classmethod
    def for_study(cls, space: SearchSpace, model: str, workload: Workload, assistant: str | None, device: str,
                  vram: int | None) -> "Prescreen":
        """The study's prescreen. A model that cannot be sized is an input error with a budget (a budget that
        cannot be estimated cannot be honoured); without one its estimates are informative only."""
        try:
            estimator = Estimator.for_model(model, workload, assistant=assistant)
            estimator(Candidate(), device)  # sizes the model now: fail here, not mid-study
        except InputError:
            if vram is not None:
                raise
            estimator = None
        if estimator is not None:  # a prompt that cannot run fails the study now, not every trial
            check_prompts_fit(estimator.config, estimator.prompt_lengths, estimator.lengths_from,
                              workload.max_new_tokens)
        return cls(space, estimator, vram, device, assistant)

    def estimate(self, candidate: Candidate) -> MemoryEstimate | None:
        if self.estimator is None:
            return None
        try:
            return self.estimator(candidate, self.device)
        except InputError:
            if self.vram is not None:
                raise
            return None

    def over_budget(self, estimate: MemoryEstimate | None) -> bool:
        if faults.prescreen_disabled():  # tests only: let a real out-of-memory error happen in the worker
            return False
        return self.vram is not None and estimate is not None and estimate.total > self.vram

    def fits(self, candidate: Candidate) -> bool:
        return not self.over_budget(self.estimate(candidate))

    def suggest(self, trial: optuna.Trial, fixed: dict) -> tuple[Candidate, str | None]:
        """The trial's Candidate (with the study's assistant), and why it cannot run where a trial enqueued
        from outside (`fixed`: its enqueued params) fixes values that this study's space does not take on
        this machine: a value it does not hold, or one of a knob whose condition does not hold. Such a trial
        is recorded as an invalid combination, neither a crash of the study nor silently another one."""
        try:
            candidate = self.space.suggest(trial)
        except ValueError as error:
            if not fixed:
                raise
            try:
                candidate = Candidate(**{k: v for k, v in fixed.items() if k in KNOBS})
            except (TypeError, ValueError, CandidateError):
                candidate = Candidate()
            left_out = "; ".join(f"{knob}={value}: {why}" for knob, value, why in self.space.left_out
                                 if fixed.get(knob) == value)
            return candidate.with_assistant(self.assistant), (
                f"an enqueued value is not in this study's search space ({error})"
                + (f"; left out on this machine: {left_out}" if left_out else ""))
        ignored = {k: v for k, v in fixed.items() if k in KNOBS and getattr(candidate, k) != v}
        if ignored:
            return candidate.with_assistant(self.assistant), (
                "enqueued values that this study's search space does not take here (a knob whose condition does "
                f"not hold): {ignored}")
        return candidate.with_assistant(self.assistant), None

    def verdict(self, candidate: Candidate, role: str, outside: str | None,
                estimate: MemoryEstimate | None) -> Measurement | None:
        """The Measurement of a trial that must not be launched, or None."""
        reason = outside or self.space.invalid_reason(candidate)
        if reason is not None:
            return Measurement.failed("unsupported", "invalid_combination", reason)
        if role != "baseline" and self.over_budget(estimate):
            return Measurement.failed("oom", "over_budget", over_budget_message(estimate, self.vram))
        return None
