"""Measurement: what one trial's worker returns, and how it is kept on disk.

A worker never raises across the process boundary: it writes a Measurement whose `status` says what
happened (`ok`, `oom`, `unsupported`, `error`, `timeout`, `crash`, or `stopped` for a trial stopped early
because it clearly could not beat the best so far) and, when it failed, a `failure_kind` and the tail of the
traceback or stderr.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

STATUSES = ("ok", "oom", "unsupported", "error", "timeout", "crash", "stopped")
# Statuses that say the configuration cannot run within its limits: data for the sampler (COMPLETE with a
# violated constraint), not an accident of the run (FAIL).
INFEASIBLE_STATUSES = ("oom", "unsupported")

# Measurement fields that become Optuna user attrs of the same name.
METRIC_FIELDS = (
    "decode_tokens_per_s", "e2e_tokens_per_s", "ttft_s", "prefill_tokens_per_s", "itl_p50_s", "itl_p95_s",
    "peak_memory_bytes", "load_s", "warmup_s", "recompiles", "prefix_match", "top1_agreement", "mean_kl",
    "divergence_margin", "estimated_memory_bytes", "float32_top1_agreement", "float32_mean_kl",
    "floor_top1_agreement", "floor_mean_kl", "measured_s", "wall_s", "startup_s", "process_s", "prestarted_s",
    "windows",
)


@dataclass(frozen=True)
class Measurement:
    status: str
    failure_kind: str | None = None
    message: str | None = None
    traceback: str | None = None
    decode_tokens_per_s: float | None = None
    e2e_tokens_per_s: float | None = None
    ttft_s: float | None = None
    # prompt tokens (padding aside) over the time to first token: how fast the prompt is read
    prefill_tokens_per_s: float | None = None
    prompt_tokens: int | None = None  # per repeat, all batches, padding aside
    itl_p50_s: float | None = None
    itl_p95_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None  # "process_rss" on CPU, "cuda_max_allocated" on CUDA
    # Peaks per phase (load_and_warmup, measured, scoring), for calibrating the memory model: allocated,
    # reserved and device-in-use bytes on CUDA, RSS on CPU (autotune.worker.measure.memory_peaks).
    memory_phases: dict = field(default_factory=dict)
    # The orchestrator's estimate before launch (autotune.memory): its total, and its terms.
    estimated_memory_bytes: int | None = None
    memory_estimate: dict | None = None
    load_s: float | None = None
    warmup_s: float | None = None
    measured_s: float | None = None  # the timed passes, end to end: the time the trial measured on the device
    # When the warm-up and the timed passes ran, as [start, end] in seconds since the epoch ("warmup",
    # "measured"): where trials overlap, the study's time shares are unions of these (autotune.tuner.timeline).
    windows: dict | None = None
    recompiles: int | None = None
    repeats: int | None = None
    generated_tokens: int | None = None  # per repeat, all batches
    prefix_match: float | None = None
    top1_agreement: float | None = None
    mean_kl: float | None = None
    divergence_margin: float | None = None
    # The same scores against the model in float32, and the baseline's own (the noise floor): see
    # autotune.config.gate. None where no float32 reference was made (random weights, or it did not fit).
    float32_top1_agreement: float | None = None
    float32_mean_kl: float | None = None
    floor_top1_agreement: float | None = None
    floor_mean_kl: float | None = None
    # False for random-weight models: their text is degenerate, their agreement figures prove nothing
    equivalence_meaningful: bool = True
    max_cache_len: int | None = None  # the static cache's length (longest padded prompt + new tokens)
    # Early stopping (status "stopped"): {"after": "pass 1", "tokens_per_s": what that pass ran
    # at, "threshold": the tok/s under which a trial stops}. The trial is PRUNED in Optuna.
    stopped_early: dict | None = None
    runs: tuple = ()  # per-repeat figures, for inspection
    environment: dict = field(default_factory=dict)
    pid: int | None = None
    exit_code: int | None = None
    wall_s: float | None = None  # the worker's own time, from its start (or its job's coming) to its result
    # Of wall_s, the start-up: imports of torch and transformers and the device's context, before the job loads
    # anything (about 0 in a worker started ahead of its trial, which did them before its job came).
    startup_s: float | None = None
    # The worker process as the launcher saw it: spawn, wall_s and exit. process_s - wall_s + startup_s is the
    # start-up a trial pays before it loads anything (benchmarks/trial_overhead.py).
    process_s: float | None = None
    # A worker started ahead of its trial (autotune.worker.prestart): how long it had run when its job came. Its
    # start-up then happened beside earlier trials, and process_s - wall_s is what was left of it (it reads its
    # job once started up). None: spawned for the trial.
    prestarted_s: float | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown measurement status {self.status!r}; one of {STATUSES}")
        object.__setattr__(self, "runs", tuple(self.runs))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stopped(self) -> bool:
        return self.status == "stopped"

    @property
    def infeasible(self) -> bool:
        return self.status in INFEASIBLE_STATUSES

    @classmethod
    def failed(cls, status: str, failure_kind: str, message: str, **extra) -> "Measurement":
        return cls(status=status, failure_kind=failure_kind, message=message, **extra)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["runs"] = list(self.runs)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> "Measurement":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "Measurement":
        return cls.from_dict(json.loads(text))
