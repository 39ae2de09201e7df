"""How long a study's trials took and what filled the time, as JSON: trials finished, the wall time of the trials,
the shares of autotune.tuner.timeline, the sum of the workers' own times (what the same trials cost one after
another), the best configuration, and any trial flagged contended.

    python benchmarks/study_wall_time.py --study g24p --storage sqlite:///.gpu-out/studies/g24p.db
"""

from __future__ import annotations

import argparse
import json

import optuna

from autotune.tuner.timeline import time_shares
from autotune.tuner.trials import best_feasible_trial, finished_count


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
        "best": {"number": best.number, "decode_tokens_per_s": round(best.value, 1), "config": best.user_attrs["config"]},
        "baseline_decode_tokens_per_s": round(trials[0].value, 1) if trials and trials[0].value else None,
        "contended": [t.number for t in trials if t.user_attrs.get("failure_kind") == "contended"],
        "timed_out": [t.number for t in trials if t.user_attrs.get("failure_kind") == "timeout"],
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
