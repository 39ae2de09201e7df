"""`autotune estimate`: the memory estimate of every candidate a study would run, without running one.

The candidates are those of the space `autotune search` searches on the same machine and options
(`machine.searched_space`, then the space's valid candidates), so the two always agree; nothing is loaded
but the model's config and tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotune.config import models
from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace
from autotune.config.workload import Workload
from autotune.errors import InputError
from autotune.memory import Estimator, MemoryEstimate, is_fraction, parse_budget
from autotune.tuner import machine


@dataclass(frozen=True)
class SpaceEstimate:
    """The estimate of every valid candidate of a study's space, and what it was made for."""

    rows: tuple[tuple[Candidate, MemoryEstimate], ...]
    device: str
    budget: int | None
    invalid: int  # invalid combinations left out
    lengths_from: str  # "tokenizer" or "bytes" (an upper bound)

    def groups(self) -> list["EstimateGroup"]:
        """The rows grouped by what drives memory (dtype, quantization, cache, decoding), in order of first
        appearance."""
        grouped: dict[tuple, list[MemoryEstimate]] = {}
        for c, e in self.rows:
            grouped.setdefault(group_key(c, e), []).append(e)
        return [EstimateGroup(key, tuple(estimates)) for key, estimates in grouped.items()]

    def to_json_rows(self) -> list[dict]:
        return [{"candidate": c.to_dict(), "config": c.describe(), "estimate_bytes": e.total, "terms": e.terms(),
                 "fits": e.fits(self.budget), "budget_bytes": self.budget, "device": e.device, "dtype": e.dtype,
                 "max_cache_len": e.max_cache_len} for c, e in self.rows]


def group_key(candidate: Candidate, estimate: MemoryEstimate) -> tuple[str, str, str, str]:
    """(dtype, quantization, cache, decoding) as a person reads them (a 4-bit type and its double quantization
    vary within a group: the group's range shows them)."""
    return estimate.dtype, candidate.quantization, candidate.cache_implementation, candidate.decoding


@dataclass(frozen=True)
class EstimateGroup:
    """Candidates alike in what drives their memory."""

    key: tuple[str, str, str, str]
    estimates: tuple[MemoryEstimate, ...]

    @property
    def count(self) -> int:
        return len(self.estimates)

    @property
    def weights(self) -> int:
        return max(e.weights for e in self.estimates)

    @property
    def kv_cache(self) -> int:
        return max(e.kv_cache for e in self.estimates)

    @property
    def total_range(self) -> tuple[int, int]:
        totals = [e.total for e in self.estimates]
        return min(totals), max(totals)

    def fitting(self, budget: int) -> int:
        return sum(e.total <= budget for e in self.estimates)


def budget_bytes(text: str | None, env: dict) -> int | None:
    """A `--vram` budget in bytes; a fraction needs the device's total memory from the probe."""
    if text is None:
        return None
    total = env.get("total_memory_bytes")
    if is_fraction(text) and total is None:
        raise InputError(f"--vram {text} is a fraction of the card's memory, and there is no CUDA device here to "
                         "read it from: give an amount, like 24GB or 24GiB")
    return parse_budget(text, total)


def estimate_space(model: str, space: str, device: str, workload: Workload, assistant: str | None = None,
                   vram: str | None = None) -> SpaceEstimate:
    """Estimate every candidate `autotune search` would run with these options on this machine.

    Args:
        model: a model folder, hub id or `random:<architecture>`.
        space: a search space name or YAML file.
        device: "auto", "cpu" or "cuda" (cuda works on a machine without one: see `machine.probe_for_estimate`).
        workload: the workload.
        assistant: the assistant model, or None.
        vram: the budget as the user writes it, or None.

    Returns:
        The SpaceEstimate.
    """
    base = SearchSpace.load(space)
    model_id = models.resolve_model(model)
    assistant_id = models.resolve_model(assistant) if assistant else None
    env = machine.probe_for_estimate(device)
    budget = budget_bytes(vram, env)
    searched = machine.searched_space(base, env, workload, assistant_id, model_id)
    estimator = Estimator.for_model(model_id, workload, assistant=assistant_id)
    valid = list(searched.valid_candidates(assistant_id))
    rows = tuple((c, estimator(c, env["device"])) for c in valid)
    invalid = searched.count_candidates() - len(valid)
    return SpaceEstimate(rows, env["device"], budget, invalid, estimator.lengths_from)
