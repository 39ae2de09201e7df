"""One trial in its worker process: build -> warm -> measure -> compare with the baseline.

Generation runs inside the candidate's SDPA backend context; the teacher-forced scoring inside its
`scoring_context` (that kernel first, math where it cannot run the whole sequence). A job of role
"benchmark" is measured only (no reference, no comparison). `recompiles` counts every recompilation of the
trial: warm-up, measured passes and the scoring through the candidate's forward.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from autotune.config import models
from autotune.config.measurement import Measurement
from autotune.config.objective import DEFAULT_METRIC, LABELS
from autotune.runtime import environment
from autotune.runtime.build import Built, Recipe, build
from autotune.runtime.loading import load_model
from autotune.worker import equivalence
from autotune.worker.budget import BudgetTooSmall, cap_device_memory, judge_measured
from autotune.worker.faults import inject, slow_generation
from autotune.worker.job import Job
from autotune.worker.lease import measurement_lease
from autotune.worker.measure import measure, memory_peaks
from autotune.worker.phase import write_phase
from autotune.worker.recompiles import COMPILE_COUNTER

REFERENCE_POLL_S = 0.2


def run(job: Job, env: dict | None = None) -> Measurement:
    """Run `job` and return its Measurement (exceptions are the caller's to classify).

    Args:
        job: the trial: model, candidate, workload, device, role and where the reference and result go.
        env: this process's environment.describe(job.device), where the caller has it already.

    Returns:
        The Measurement: `ok` with figures and equivalence scores, `stopped` (early stopping), or a failure
        the worker decided itself (`over_budget`, `contended`).
    """
    job_dir = Path(job.result_path).parent
    env = env or environment.describe(job.device)
    inject(job.fault)
    try:
        cap_device_memory(job.budget_bytes, job.device)  # before anything is allocated on the device
    except BudgetTooSmall as exc:
        return Measurement.failed("oom", "over_budget", str(exc), environment=env)
    write_phase(job_dir, "load")
    built = build(Recipe.of_candidate(job.model, job.candidate), job.device, job.workload)
    slow_generation(built, job.fault)
    facts = dict(load_s=built.load_s, environment=env, max_cache_len=built.max_cache_len,
                 equivalence_meaningful=not models.is_random(job.model))
    with built.runtime_context():
        figures, contended = timed_passes(job, built, job_dir)
    if contended:  # not a valid measurement of this configuration: FAIL, retried
        return Measurement.failed("error", "contended", contended, environment=env, load_s=built.load_s)
    continuations = figures.pop("continuations")
    if figures.get("stopped_early"):  # clearly slower than the best so far: not compared, not judged
        return judge_measured(stopped(figures, facts), job.budget_bytes, job.device)
    scores = {} if job.role == "benchmark" else compare(job, built, continuations, figures, job_dir)
    figures["recompiles"] = COMPILE_COUNTER.recompiles
    measurement = Measurement(status="ok", **facts, **figures, **scores)
    return judge_measured(measurement, job.budget_bytes, job.device)


def timed_passes(job: Job, built: Built, job_dir: Path) -> tuple[dict, str | None]:
    """Warm-up and measured passes. The measured ones run under the measurement lease (where the orchestrator
    pipelines trials) and, on CUDA, watched for other processes at work on the GPU. Returns the figures and
    why the measurement is not valid (None: it is)."""
    watches = []

    @contextlib.contextmanager
    def hold():
        with measurement_lease(), contextlib.ExitStack() as stack:
            if job.device == "cuda":
                from autotune.worker.contention import ContentionWatch

                watches.append(stack.enter_context(ContentionWatch()))
            yield

    figures = measure(built, job.workload, repeats=job.repeats, warmup=job.warmup,
                      on_phase=lambda phase: write_phase(job_dir, phase), stop_below=lambda: stop_below(job),
                      stop_metric=job.stop_metric, hold=hold)
    return figures, (watches[0].reason if watches else None)


def stop_below(job: Job) -> float | None:
    """The threshold under which the trial stops early, now: the one it was launched with, or the orchestrator's
    current one where that is higher (the best improved while this trial loaded and compiled)."""
    current = None
    if job.stop_below_path:
        try:
            current = float(Path(job.stop_below_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written yet, or none: the launch's threshold holds
            current = None
    values = [v for v in (job.stop_below, current) if v is not None]
    return max(values) if values else None


def reference_when_ready(job: Job) -> Path:
    """The baseline's reference, waited for up to `job.reference_wait_s` where the baseline runs beside this trial
    (a trial of the first wave of a pipelined study reaches its scoring before the baseline has written it). A
    baseline that fails stops the study, which ends this worker."""
    path = Path(job.reference_path)
    deadline = time.monotonic() + job.reference_wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(REFERENCE_POLL_S)
    return path


def stopped(figures: dict, facts: dict) -> Measurement:
    """The Measurement of a trial stopped after its first measured pass (early stopping)."""
    early = figures["stopped_early"]
    label = LABELS.get(early.get("metric", DEFAULT_METRIC), "tok/s")
    after = "the first measured pass" if early["after"] == "pass 1" else "the warm-up (its median step)"
    message = (f"stopped after {after}: {early['tokens_per_s']:.1f} {label}, under "
               f"{early['threshold']:.1f}{' / 2' if early['after'] == 'warm-up' else ''} (the best so far times "
               "--early-stop)")
    return Measurement(status="stopped", failure_kind="hopeless", message=message, **facts, **figures)


def compare(job: Job, built: Built, continuations: list, figures: dict, job_dir: Path) -> dict:
    """Equivalence with the baseline (a baseline job makes the reference first, with its float32 scoring and
    the noise floor). Adds the scoring pass's memory peaks to `figures`; returns the scores."""
    with built.scoring_context():
        write_phase(job_dir, "compare")
        if job.role != "baseline":
            reference = equivalence.load_reference(reference_when_ready(job))
        else:
            prompts = job.workload.prompts[:len(continuations)]
            reference = equivalence.build_reference(built.model, built.tokenizer, prompts, continuations, job.device)
            if not models.is_random(job.model):  # random weights are never judged: no float32 reference
                add_float32_reference(job, built, reference)
        scores = equivalence.compare(reference, built.model, None if job.workload.sampling else continuations,
                                     job.device)
        if job.role == "baseline":
            if "float32" in reference:
                scores = equivalence.set_noise_floor(reference, scores)
            equivalence.save_reference(reference, job.reference_path)
        figures["memory_phases"]["scoring"] = memory_peaks(job.device)
    return scores


def add_float32_reference(job: Job, built: Built, reference: dict) -> None:
    """Score the baseline's continuations by the model in float32 too (loaded beside the baseline, then
    freed). Where it does not fit the device, the study goes without: its gate falls back to the baseline rule."""
    import torch

    if built.model.dtype == torch.float32:
        equivalence.add_float32(reference, None)
        return
    try:
        recipe = Recipe.of_candidate(job.model, replace(job.candidate, dtype="float32"))
        model32 = load_model(recipe.model, recipe.load_kwargs, job.device)
        equivalence.add_float32(reference, model32)
    except torch.OutOfMemoryError:
        reference.pop("float32", None)
    finally:
        model32 = None
        if job.device == "cuda":
            torch.cuda.empty_cache()
