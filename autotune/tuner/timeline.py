"""Where a study's wall time went, from what every trial recorded: the device measuring (the timed passes),
warming up and compiling, or idle (loading, process start-up, scoring, and the time outside any worker: the
orchestrator, the sampler, the storage). Issue 29's overlap of trials is judged by these shares.

Trials only: the confirmations after the last trial are not in it. Where trials overlap (`--overlap`, several
GPUs) the sums of the parts exceed the wall time: the shares then come from when each trial warmed up and
measured (its `windows`), as unions: the device measuring (some trial's timed passes), warming up and compiling
while none measured, or neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from optuna.trial import TrialState

PARTS = ("measured_s", "warmup_s", "load_s", "startup_s", "worker_rest_s")


@dataclass(frozen=True)
class TimeShares:
    """Seconds of a study's wall time by what filled them (see the module's docstring)."""

    wall_s: float
    trials: int
    measured_s: float
    warmup_s: float
    load_s: float
    startup_s: float
    worker_rest_s: float
    overlapped: bool = False  # trials ran side by side: measured_s and warmup_s are unions of their windows

    @property
    def outside_s(self) -> float:
        return max(0.0, self.wall_s - sum(getattr(self, part) for part in PARTS))

    def share(self, seconds: float) -> float:
        return seconds / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        """The shares in one line, as `autotune show` prints them."""
        idle = self.wall_s - self.measured_s - self.warmup_s
        if self.overlapped:
            return (f"wall time of the trials {self.wall_s / 60:.1f} min over {self.trials} worker processes side by "
                    f"side: the device measuring {self.share(self.measured_s):.0%}, warming up and compiling while "
                    f"none measured {self.share(self.warmup_s):.0%}, neither {self.share(max(idle, 0.0)):.0%} "
                    "(loading, start-up, scoring, the orchestrator)")
        return (f"wall time of the trials {self.wall_s / 60:.1f} min over {self.trials} worker processes: the device "
                f"measuring {self.share(self.measured_s):.0%}, warming up and compiling "
                f"{self.share(self.warmup_s):.0%}, otherwise idle {self.share(max(idle, 0.0)):.0%} (loading "
                f"{self.share(self.load_s):.0%}, process start-up {self.share(self.startup_s):.0%}, scoring and the "
                f"rest of the workers {self.share(self.worker_rest_s):.0%}, outside the workers "
                f"{self.share(self.outside_s):.0%})")


def time_shares(trials) -> TimeShares | None:
    """The study's time shares from its finished trials' recorded figures.

    Args:
        trials: the study's trials (FrozenTrial).

    Returns:
        TimeShares, or None where no trial recorded its process time (studies of older versions, or none ran).
    """
    finished = [t for t in trials if t.datetime_start and t.datetime_complete and t.state != TrialState.RUNNING]
    ran = [t.user_attrs for t in finished if isinstance(t.user_attrs.get("process_s"), (int, float))
           and t.user_attrs.get("duplicate_of") is None]
    if not ran:
        return None
    wall = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()

    def total(name: str) -> float:
        return sum(a.get(name) or 0.0 for a in ran)

    startup = sum(startup_on_the_clock(a) for a in ran)
    rest = sum(max(0.0, (a.get("wall_s") or 0.0) - sum(a.get(n) or 0.0 for n in ("startup_s", "load_s", "warmup_s",
                                                                                   "measured_s")))
               for a in ran)
    shares = TimeShares(wall_s=wall, trials=len(ran), measured_s=total("measured_s"), warmup_s=total("warmup_s"),
                        load_s=total("load_s"), startup_s=startup, worker_rest_s=rest)
    if sum(getattr(shares, part) for part in PARTS) <= wall:
        return shares
    return overlapped_shares(shares, [a["windows"] for a in ran if isinstance(a.get("windows"), dict)])


def startup_on_the_clock(attrs: dict) -> float:
    """The start-up a trial's worker paid on the trial's clock: spawn and interpreter (process_s - wall_s), then
    imports and the device's context (startup_s). A worker started ahead of its trial did them before its job came.

    Args:
        attrs: the trial's recorded figures (its user attrs, or its result's fields).

    Returns:
        Seconds (0.0 where the figures are missing).
    """
    if not isinstance(attrs.get("process_s"), (int, float)):
        return 0.0
    before = max(0.0, attrs["process_s"] - (attrs.get("wall_s") or attrs["process_s"]))
    return before + (attrs.get("startup_s") or 0.0)


def overlapped_shares(shares: TimeShares, windows: list[dict]) -> TimeShares:
    """The shares of trials that ran side by side, from their warm-up and measured windows (unions)."""
    if not windows:
        return shares
    measured = union([tuple(w["measured"]) for w in windows if w.get("measured")])
    warmup = union([tuple(w["warmup"]) for w in windows if w.get("warmup")])
    measuring = length(measured)
    compiling_alone = length(warmup) - length(intersection(warmup, measured))
    return replace(shares, measured_s=measuring, warmup_s=compiling_alone, overlapped=True)


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted disjoint intervals covering the same time as `intervals`."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The time two sets of disjoint intervals share."""
    return [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b if max(s1, s2) < min(e1, e2)]


def length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)
