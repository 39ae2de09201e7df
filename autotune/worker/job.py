"""Job: everything a worker process needs to run one trial, as one JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autotune.config.objective import DEFAULT_METRIC
from autotune.config.candidate import Candidate
from autotune.config.workload import Workload


@dataclass(frozen=True)
class Job:
    model: str
    candidate: Candidate
    workload: Workload
    device: str
    role: str  # "baseline" makes the reference; "benchmark" is measured only; other roles are compared with it
    reference_path: str
    result_path: str
    repeats: int = 3
    warmup: int = 1
    trial_number: int | None = None
    # The --vram budget in bytes: a cap on CUDA, checked against the peak RSS on CPU (worker/budget.py).
    budget_bytes: int | None = None
    # Early stopping: the figure (`stop_metric`, the study's objective) under which the trial stops after its first
    # timed pass (None: never).
    stop_below: float | None = None
    stop_metric: str = DEFAULT_METRIC
    # Trials side by side: a file the orchestrator rewrites with the current threshold as the best improves, read
    # when the trial reaches its measurement (a better best may have come while it compiled); and how long the
    # trial waits for the baseline's reference before scoring, where the baseline runs beside it (0: not at all).
    stop_below_path: str | None = None
    reference_wait_s: float = 0.0
    # Test-only fault injection (see autotune.worker.faults); never set from a user's configuration.
    fault: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["candidate"] = self.candidate.to_dict()
        data["workload"] = self.workload.to_dict()
        return json.dumps(data, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        data = json.loads(text)
        data["candidate"] = Candidate.from_dict(data["candidate"])
        data["workload"] = Workload.from_dict(data["workload"])
        return cls(**data)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")
