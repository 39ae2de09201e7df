"""Measure a built candidate: warm it up, then time repeated passes over the workload.

Every generate call is timed with a streamer that stamps each step as its tokens reach the host
(`streamer.put` receives them with `.cpu()`, a synchronisation point), which gives time to first
token and inter-token latencies without changing the decoding loop.

Definitions (per repeat = one pass over all batches of the workload; figures are medians of repeats):
- decode tokens/s  = tokens generated after the first one / (end-to-end time - time to first token)
- end-to-end tok/s = all generated tokens / end-to-end time
- TTFT             = mean over the pass's generate calls of the time until the first new token
- ITL p50/p95      = percentiles over every step of every measured call (a step that delivers k tokens
                     per sequence, as assisted decoding does, counts as k steps of 1/k of its time)
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers.generation.streamers import BaseStreamer

from autotune.config.objective import DEFAULT_METRIC
from autotune.config.workload import Workload
from autotune.runtime.build import Built
from autotune.worker.recompiles import COMPILE_COUNTER

# A trial whose warm-up steps run under this share of the early-stop threshold stops before it measures.
WARMUP_STOP_SHARE = 0.5


class TokenClock(BaseStreamer):
    """Records when each decoding step's tokens reach the host."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.prompt_seen = False
        self.stamps: list[tuple[float, int]] = []  # (time, tokens per sequence)

    def put(self, value):
        now = time.perf_counter()
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        self.stamps.append((now, max(1, value.numel() // self.batch_size)))

    def end(self):
        pass


@dataclass
class CallTiming:
    start: float
    end: float
    first_token: float
    new_tokens: int  # per sequence
    batch_size: int
    step_gaps: list[float] = field(default_factory=list)
    prompt_tokens: int = 0  # padding aside

    @property
    def e2e_s(self) -> float:
        return self.end - self.start

    @property
    def ttft_s(self) -> float:
        return self.first_token - self.start


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_generate(built: Built, prompts, seed: int) -> tuple[torch.Tensor, CallTiming]:
    """One generate call on one batch; returns the new tokens (batch x new) and its timing."""
    inputs = built.tokenize(prompts)
    clock = TokenClock(len(prompts))
    torch.manual_seed(seed)
    _sync(built.device)
    start = time.perf_counter()
    with torch.inference_mode():
        output = built.generate(inputs, streamer=clock)
    _sync(built.device)
    end = time.perf_counter()
    new_tokens = output[:, inputs["input_ids"].shape[1]:].cpu()
    stamps = clock.stamps or [(end, new_tokens.shape[1])]
    gaps = []
    previous = stamps[0][0]
    for stamp, count in stamps[1:]:
        gaps += [(stamp - previous) / count] * count
        previous = stamp
    mask = inputs.get("attention_mask")
    prompt_tokens = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
    timing = CallTiming(start, end, stamps[0][0], new_tokens.shape[1], len(prompts), gaps, prompt_tokens)
    return new_tokens, timing


def run_pass(built: Built, workload: Workload) -> tuple[list[list[int]], list[CallTiming]]:
    """Generate for every batch of the workload once; continuations are per prompt, in order."""
    continuations, timings = [], []
    for index, batch in enumerate(workload.batches()):
        tokens, timing = timed_generate(built, batch, workload.seed + index)
        continuations += tokens.tolist()
        timings.append(timing)
    return continuations, timings


def summarize_pass(timings: list[CallTiming]) -> dict:
    e2e = sum(t.e2e_s for t in timings)
    decode_time = sum(t.e2e_s - t.ttft_s for t in timings)
    tokens = sum(t.new_tokens * t.batch_size for t in timings)
    decode_tokens = sum((t.new_tokens - 1) * t.batch_size for t in timings)
    prompt_tokens, prefill_time = sum(t.prompt_tokens for t in timings), sum(t.ttft_s for t in timings)
    return {
        "e2e_s": e2e,
        "generated_tokens": tokens,
        "decode_tokens_per_s": decode_tokens / decode_time if decode_time > 0 else None,
        "e2e_tokens_per_s": tokens / e2e,
        "ttft_s": statistics.fmean(t.ttft_s for t in timings),
        "prompt_tokens": prompt_tokens,
        "prefill_tokens_per_s": prompt_tokens / prefill_time if prefill_time > 0 else None,
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_memory(device: str) -> tuple[int, str]:
    if device == "cuda":
        return torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    # ru_maxrss is in KiB on Linux: the process's peak resident memory, model load included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_rss"


def memory_peaks(device: str) -> dict:
    """Peaks since the last reset, for calibrating autotune.memory: the caching allocator's allocated and
    reserved bytes and the device memory in use (context included) on CUDA; the peak RSS on CPU."""
    if device == "cuda":
        free, total = torch.cuda.mem_get_info()
        return {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved(),
                "device_used_now": total - free}
    return {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def hopeless(summary: dict, stop_below: float | None, metric: str = DEFAULT_METRIC) -> bool:
    """A pass so slow (by `metric`, the study's objective) that the trial clearly cannot beat the best so far
    (early stopping)."""
    value = summary.get(metric)
    return stop_below is not None and value is not None and value < stop_below


def measure(built: Built, workload: Workload, repeats: int = 3, warmup: int = 1, on_phase=None,
            stop_below: float | Callable[[], float | None] | None = None, stop_metric: str = DEFAULT_METRIC,
            hold=None) -> dict:
    """Warm up (compiling whatever compiles), then time `repeats` passes. Returns the figures and the
    continuations of the first measured pass. `on_phase("warmup" | "measure")` is told as each begins; `hold()`
    (a context manager) is held around the timed passes: the measurement lease and the contention watch.

    Early stopping: when the first measured pass runs under `stop_below` (its `stop_metric`), no further pass is
    run and the figures carry `stopped_early`. A warm-up pass is judged only by its median step (decode tok/s),
    and only against half of `stop_below` (WARMUP_STOP_SHARE): on a GPU even an eager model's first pass runs
    slower than the next ones (CUDA kernels load, the allocator grows), but not at a quarter of its pace. A
    trial stopped there never takes the measurement lease, so its slow passes hold up no other trial.
    `stop_below` may be a function, asked after the warm-up and again once the lease is held: trials side by side
    learn of a better best found while they compiled or waited."""
    on_phase = on_phase or (lambda phase: None)
    on_phase("warmup")
    started, warmup_at, warm = time.perf_counter(), time.time(), []
    for _ in range(warmup):
        warm = run_pass(built, workload)[1]
    warmup_s = time.perf_counter() - started
    phases = {"load_and_warmup": memory_peaks(built.device)}  # before the reset below: compilation is here
    windows = {"warmup": [warmup_at, warmup_at + warmup_s]}
    threshold = stop_below if callable(stop_below) else (lambda fixed=stop_below: fixed)
    steady = steady_speed(warm, workload.batch_size) if stop_metric == DEFAULT_METRIC else None
    below = threshold()
    if below is not None and steady is not None and steady < below * WARMUP_STOP_SHARE:
        summary = {**summarize_pass(warm), "decode_tokens_per_s": steady, "e2e_s": 0.0}
        figures = stopped_figures(summary, "warm-up", below, phases, built.device, stop_metric)
        return {**figures, "warmup_s": warmup_s, "windows": windows}
    with (hold or contextlib.nullcontext)():
        on_phase("measure")
        measured_at = time.time()
        figures = timed_passes(built, workload, repeats, threshold(), stop_metric, phases)
        windows["measured"] = [measured_at, time.time()]
    return {**figures, "warmup_s": warmup_s, "windows": windows}


def steady_speed(timings: list[CallTiming], batch_size: int) -> float | None:
    """Decode tok/s of a warm-up pass at its median step: what compiling and first calls cost is in a few
    steps only, so the median step is the configuration's steady pace (None: no steps)."""
    gaps = [gap for t in timings for gap in t.step_gaps]
    return batch_size / statistics.median(gaps) if gaps and statistics.median(gaps) > 0 else None


def timed_passes(built: Built, workload: Workload, repeats: int, stop_below: float | None, stop_metric: str,
                 phases: dict) -> dict:
    """The measured passes (see `measure`): their medians, or the one pass that stopped the trial early."""
    if built.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    passes, gaps, continuations = [], [], None
    for index in range(repeats):
        conts, timings = run_pass(built, workload)
        continuations = continuations if continuations is not None else conts
        passes.append(summarize_pass(timings))
        gaps += [gap for t in timings for gap in t.step_gaps]
        if index == 0 and repeats > 1 and hopeless(passes[0], stop_below, stop_metric):
            phases["measured"] = memory_peaks(built.device)
            return stopped_figures(passes[0], "pass 1", stop_below, phases, built.device, stop_metric)
    peak, peak_kind = peak_memory(built.device)
    phases["measured"] = memory_peaks(built.device)

    def median(key):
        values = [p[key] for p in passes if p[key] is not None]
        return statistics.median(values) if values else None

    return {
        "decode_tokens_per_s": median("decode_tokens_per_s"),
        "e2e_tokens_per_s": median("e2e_tokens_per_s"),
        "ttft_s": median("ttft_s"),
        "prefill_tokens_per_s": median("prefill_tokens_per_s"),
        "prompt_tokens": passes[0]["prompt_tokens"],
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "measured_s": sum(p["e2e_s"] for p in passes),
        # every recompilation of this process so far: build, warm-up and measured passes
        "recompiles": COMPILE_COUNTER.recompiles,
        "repeats": repeats,
        "generated_tokens": passes[0]["generated_tokens"],
        "runs": passes,
        "continuations": continuations,
        "memory_phases": phases,
    }


def stopped_figures(summary: dict, after: str, stop_below: float, phases: dict, device: str,
                    metric: str = DEFAULT_METRIC) -> dict:
    """The figures of a trial stopped early: the one pass that decided it, no continuations."""
    peak, peak_kind = peak_memory(device)
    return {
        "stopped_early": {"after": after, "tokens_per_s": summary[metric], "threshold": stop_below, "metric": metric},
        "decode_tokens_per_s": summary["decode_tokens_per_s"],
        "e2e_tokens_per_s": summary["e2e_tokens_per_s"],
        "ttft_s": summary["ttft_s"],
        "prefill_tokens_per_s": summary["prefill_tokens_per_s"],
        "prompt_tokens": summary["prompt_tokens"],
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "measured_s": summary["e2e_s"],
        "recompiles": COMPILE_COUNTER.recompiles,
        "repeats": 1 if after == "pass 1" else 0,
        "generated_tokens": summary["generated_tokens"],
        "runs": [summary],
        "continuations": None,
        "memory_phases": phases,
    }
