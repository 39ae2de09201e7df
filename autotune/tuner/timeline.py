"""Where a study's wall time went, from what every trial recorded: the device measuring (the timed passes),
warming up and compiling, or idle (loading, process start-up, scoring, and the time outside any worker: the
orchestrator, the sampler, the storage). Issue 29's overlap of trials is judged by these shares.

Trials only: the confirmations after the last trial are not in it. Where trials overlap (several GPUs, or a
pipeline), the sums of the parts exceed the wall time and "outside the workers" is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def outside_s(self) -> float:
        return max(0.0, self.wall_s - sum(getattr(self, part) for part in PARTS))

    def share(self, seconds: float) -> float:
        return seconds / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        """The shares in one line, as `autotune show` prints them."""
        idle = self.wall_s - self.measured_s - self.warmup_s
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

    startup = sum(max(0.0, a["process_s"] - (a.get("wall_s") or a["process_s"])) for a in ran)
    rest = sum(max(0.0, (a.get("wall_s") or 0.0) - sum(a.get(n) or 0.0 for n in ("load_s", "warmup_s", "measured_s")))
               for a in ran)
    return TimeShares(wall_s=wall, trials=len(ran), measured_s=total("measured_s"), warmup_s=total("warmup_s"),
                      load_s=total("load_s"), startup_s=startup, worker_rest_s=rest)
