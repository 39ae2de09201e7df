"""The memory budget (`--vram`) inside a worker process.

On CUDA the budget is enforced: before anything is loaded, the worker caps PyTorch's caching allocator
with `torch.cuda.set_per_process_memory_fraction`, so an allocation past the budget raises an ordinary
out-of-memory error (status `oom`), and a 24 GB study on a 141 GB card finds what a 24 GB card would.
The cap is (budget - CUDA context) / card total: the context lives outside the allocator, and on a real
24 GB card it takes its share of the 24 GB too (the constant is autotune.memory.CUDA_CONTEXT_BYTES).

On CPU the budget is checked, not enforced: after the trial, a peak resident set (RSS) over the budget
turns the measurement into `oom` / `over_budget_measured` (its figures are kept). Enforcing it with
`resource.setrlimit(RLIMIT_AS)` is no way to do it: RLIMIT_AS limits *virtual* address space, and torch,
OpenMP/oneDNN thread pools and glibc's per-thread malloc arenas reserve large virtual regions they never touch
(a CPU worker on a 2-core machine maps 1.1-1.4 GiB of address space for 0.35-0.55 GiB resident; more threads
reserve more), so any limit near the budget kills healthy trials, and the failure surfaces as a MemoryError or
an abort deep inside C++ rather than as a clean out-of-memory. Linux ignores RLIMIT_RSS. A cgroup `memory.max`
would enforce RSS properly but needs privileges a worker does not have.
"""

from __future__ import annotations

import resource
from dataclasses import replace

from autotune.config.measurement import Measurement
from autotune.memory.calibration import CUDA_CONTEXT_BYTES
from autotune.memory.units import format_bytes


class BudgetTooSmall(Exception):
    """The budget cannot even hold the CUDA context."""


def cap_device_memory(budget_bytes: int | None, device: str) -> float | None:
    """On CUDA, cap this process's caching allocator to the budget; returns the fraction set (None when
    there is no budget, no CUDA, or the budget is at least the whole card)."""
    if budget_bytes is None or device != "cuda":
        return None
    import torch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    allocator_bytes = budget_bytes - CUDA_CONTEXT_BYTES
    if allocator_bytes <= 0:
        raise BudgetTooSmall(f"the --vram budget {format_bytes(budget_bytes)} does not even hold the CUDA "
                             f"context (~{format_bytes(CUDA_CONTEXT_BYTES)})")
    if allocator_bytes >= total:
        return None
    fraction = allocator_bytes / total
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


def peak_rss_bytes() -> int:
    """The peak resident set of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def judge_measured(measurement: Measurement, budget_bytes: int | None, device: str) -> Measurement:
    """On CPU, a trial whose whole-process peak RSS exceeded the budget is `oom` / `over_budget_measured`;
    its figures stay in the Measurement for inspection."""
    if budget_bytes is None or device != "cpu" or not measurement.ok:
        return measurement
    peak = peak_rss_bytes()
    if peak <= budget_bytes:
        return measurement
    return replace(measurement, status="oom", failure_kind="over_budget_measured",
                   message=f"peak resident memory {format_bytes(peak)} of the trial (load, warm-up, measured "
                           f"passes and equivalence scoring) is over the --vram budget {format_bytes(budget_bytes)}")
