"""Entry point of a worker process: `python -m autotune.worker JOB.json RESULT.json`.

Runs build -> warm -> measure -> compare for one Job and writes a Measurement to RESULT.json. Whatever
goes wrong becomes a Measurement with a status and a traceback; nothing is raised across the process
boundary. The process exits on its own if its parent (the orchestrator) dies.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from autotune.measurement import Measurement, write_atomic
from autotune.worker.job import Job
from autotune.worker.launcher import FAULT_LOG, PARENT_VARIABLE


def exit_with_parent(interval: float = 0.5) -> None:
    """Leave when the orchestrator is gone (killed with -9, say), so no worker outlives its study.

    On Linux the kernel does it: PR_SET_PDEATHSIG sends SIGKILL the moment the parent dies, whatever this
    process is doing (a thread cannot run while an import of torch holds the GIL). A watching thread is
    the fallback elsewhere. The parent is the pid the launcher gave (AUTOTUNE_WORKER_PARENT), not the one
    this process sees: an orchestrator killed while the worker was still starting has left it to another
    parent already, and the worker would watch that one (a fresh CI machine's first trial did so)."""
    given = os.environ.get(PARENT_VARIABLE, "")
    parent = int(given) if given.isdigit() else os.getppid()
    if os.getppid() != parent:  # the orchestrator died while this process started
        os._exit(1)
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


# Errors of torch.compile that belong to the configuration, not to the run (seen on the H200: float32 +
# flex_attention under max-autotune raised InductorError / LoweringException / NoValidChoicesError).
COMPILE_ERRORS = ("InductorError", "LoweringException", "NoValidChoicesError", "BackendCompilerFailed")


def classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception to a (status, failure_kind) pair."""
    import torch

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return "oom", "oom"
    if "CUDA error" in text or "device-side assert" in text or "illegal memory access" in text:
        return "error", "cuda_error"
    if "No viable backend for scaled_dot_product_attention" in text or "No available kernel" in text:
        # the chosen SDPA backend cannot run these inputs (dtype, mask, head size): a property of the
        # configuration, data for the sampler (both messages seen on the H200)
        return "unsupported", "unsupported"
    if any(name in text for name in COMPILE_ERRORS):
        # torch.compile cannot build this configuration (an Inductor lowering with no kernel choice, a graph
        # that cannot be captured): it fails the same way every time, so it is infeasible, not retried
        return "unsupported", "compile_error"
    if "accessing tensor output of CUDAGraphs that has been overwritten" in text:
        return "unsupported", "cudagraph_overwritten"
    if isinstance(exc, (NotImplementedError,)) or "not supported" in text.lower() or "unsupported" in text.lower():
        return "unsupported", "unsupported"
    return "error", "error"


def run(job: Job) -> Measurement:
    """Build, warm, measure and compare. Imports torch and transformers here, in the child only.

    Generation runs inside the candidate's SDPA backend context; the teacher-forced scoring inside
    `scoring_context` (that kernel first, math where it cannot run the whole sequence). A job
    of role "benchmark" is measured only (no reference, no comparison). `recompiles` counts every
    recompilation of the trial: warm-up, measured passes and the scoring through the candidate's forward."""
    from autotune import environment, models
    from autotune.worker import equivalence
    from autotune.worker.budget import BudgetTooSmall, cap_device_memory, judge_measured
    from autotune.worker.build import build
    from autotune.worker.faults import inject, slow_generation
    from autotune.worker.measure import COMPILE_COUNTER, measure, memory_peaks
    from autotune.worker.phase import write_phase

    job_dir = Path(job.result_path).parent

    def on_phase(phase: str) -> None:
        write_phase(job_dir, phase)

    env = environment.describe(job.device)
    inject(job.fault)
    try:
        cap_device_memory(job.budget_bytes, job.device)  # before anything is allocated on the device
    except BudgetTooSmall as exc:
        return Measurement.failed("oom", "over_budget", str(exc), environment=env)
    on_phase("load")
    built = build(job.model, job.candidate, job.workload, job.device)
    slow_generation(built, job.fault)
    built_facts = dict(load_s=built.load_s, environment=env, max_cache_len=built.max_cache_len,
                       equivalence_meaningful=not models.is_random(job.model))
    with built.runtime_context():
        def measure_job() -> dict:
            return measure(built, job.workload, repeats=job.repeats, warmup=job.warmup, on_phase=on_phase,
                           stop_below=job.stop_below)

        if job.device == "cuda":
            from autotune.worker.contention import ContentionWatch

            with ContentionWatch() as watch:
                figures = measure_job()
            if watch.reason:  # not a valid measurement of this configuration: FAIL, retried
                return Measurement.failed("error", "contended", watch.reason, environment=env, load_s=built.load_s)
        else:
            figures = measure_job()
        continuations = figures.pop("continuations")
        if figures.get("stopped_early"):  # clearly slower than the best so far: not compared, not judged
            early = figures["stopped_early"]
            message = (f"stopped after the first measured pass: {early['tokens_per_s']:.1f} decode tok/s, under "
                       f"{early['threshold']:.1f} (the best so far times --early-stop)")
            stopped = Measurement(status="stopped", failure_kind="hopeless", message=message, **built_facts,
                                  **figures)
            return judge_measured(stopped, job.budget_bytes, job.device)
        scores = {}
    if job.role != "benchmark":
        with built.scoring_context():
            on_phase("compare")
            if job.role == "baseline":
                reference = equivalence.build_reference(built.model, built.tokenizer,
                                                        job.workload.prompts[:len(continuations)], continuations,
                                                        job.device)
                equivalence.save_reference(reference, job.reference_path)
            else:
                reference = equivalence.load_reference(job.reference_path)
            scores = equivalence.compare(reference, built.model, None if job.workload.sampling else continuations,
                                         job.device)
            figures["memory_phases"]["scoring"] = memory_peaks(job.device)
    figures["recompiles"] = COMPILE_COUNTER.recompiles
    measurement = Measurement(status="ok", **built_facts, **figures, **scores)
    return judge_measured(measurement, job.budget_bytes, job.device)


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    # a native crash (seen on the H200: signal 11 while compiling flex attention with weight-only int8) leaves
    # no result: the Python stacks it happened in go to the job folder's fault log, which the launcher records
    # (the file stays open until the process ends: faulthandler writes to it at the crash)
    faulthandler.enable(file=open(Path(job_path).parent / FAULT_LOG, "w", encoding="utf-8"))
    exit_with_parent()
    started = time.perf_counter()
    try:
        job = Job.from_json(Path(job_path).read_text(encoding="utf-8"))
        measurement = run(job)
    except BaseException as exc:  # noqa: BLE001 - everything becomes a Measurement
        try:
            status, kind = classify(exc)
        except Exception:  # torch itself may be what failed to import
            status, kind = "error", "error"
        measurement = Measurement.failed(status, kind, f"{type(exc).__name__}: {exc}"[:2000],
                                         traceback=traceback.format_exc()[-8000:])
    measurement = replace(measurement, pid=os.getpid(), wall_s=time.perf_counter() - started)
    write_atomic(result_path, measurement.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
