"""How long a study's trials took and what filled the time, as JSON: trials finished, the wall time of the trials,
the shares of autotune.tuner.timeline, the sum of the workers' own times (what the same trials cost one after
another), the start-up on the trials' clocks (workers started ahead of their trials against workers spawned for
them), the best configuration, its confirmation's CV, and any trial flagged contended.

    python benchmarks/study_wall_time.py --study g24p --storage sqlite:///.gpu-out/studies/g24p.db
"""

from __future__ import annotations

import argparse
import json
import statistics

import optuna

from autotune.tuner.confirm import STABILITY_ATTR
from autotune.tuner.timeline import startup_on_the_clock, time_shares
from autotune.tuner.trials import best_feasible_trial, finished_count


def startup(ran: list[dict]) -> dict:
    """The start-up each trial paid on its own clock (spawn, imports, the CUDA context, or what was left of them:
    autotune.tuner.timeline.startup_on_the_clock), median and count, for workers started ahead of their trials and
    for those spawned for them; and how long the started ones had been running when their job came."""
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 2) if values else None

    paid = [(startup_on_the_clock(a), a.get("prestarted_s")) for a in ran if a.get("wall_s") is not None]
    ahead = [cost for cost, before in paid if before is not None]
    spawned = [cost for cost, before in paid if before is None]
    return {"prestarted": {"trials": len(ahead), "median_s": median(ahead)},
            "spawned": {"trials": len(spawned), "median_s": median(spawned)},
            "prestarted_waiting_median_s": median([before for _, before in paid if before is not None])}


def summary(study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    ran = [t.user_attrs for t in trials if t.user_attrs.get("process_s") and t.user_attrs.get("duplicate_of") is None]
    shares = time_shares(trials)
    best = best_feasible_trial(trials)
    total = {name: round(sum(a.get(name) or 0.0 for a in ran), 1) for name in ("process_s", "warmup_s", "measured_s")}
    return {
        "study": study.study_name,
        "trials_finished": finished_count(study),
        "worker_processes": len(ran),
        "wall_s_of_the_trials": round(shares.wall_s, 1) if shares else None,
        "shares": shares.line() if shares else None,
        "sum_of_worker_times_s": total,
        "startup_on_the_trials_clock": startup(ran),
        "best": {"number": best.number, "decode_tokens_per_s": round(best.value, 1), "config": best.user_attrs["config"]},
        "baseline_decode_tokens_per_s": round(trials[0].value, 1) if trials and trials[0].value else None,
        "confirmation": study.user_attrs.get(STABILITY_ATTR),
        "contended": [t.number for t in trials if t.user_attrs.get("failure_kind") == "contended"],
        "timed_out": [t.number for t in trials if t.user_attrs.get("failure_kind") in ("timeout", "warmup_timeout")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(json.dumps(summary(optuna.load_study(study_name=args.study, storage=args.storage)), indent=1))


if __name__ == "__main__":
    main()
