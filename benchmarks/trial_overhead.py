"""What a study's trials spent besides measuring: start-up, loading and warm-up, trial by trial.

Issue 7 asks for the per-trial overhead (spawn + import + load + warm-up seconds) before and after the
reuse of torch's compile caches. A study keeps one Inductor cache folder for all its trials
(`studies/<study>/inductor-cache`, TORCHINDUCTOR_CACHE_DIR), so a configuration compiled once compiles
from the cache afterwards: the best configuration's confirmation runs (`--confirm N`, fresh processes)
are the same configuration as its trial, with the cache warm. This script reads a study's results and
prints, for every measured trial and confirmation run:

    start-up s (spawn, imports and the device's context on the trial's clock) | load s | warm-up s | overhead s | rest s (measured
    passes and the comparison with the baseline) | process s

and last, the best configuration's overhead in its trial (cold cache) against its confirmation runs
(warm cache). Results written before `process_s` was recorded show "-" for start-up.

    python benchmarks/trial_overhead.py --study g24 --root studies
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from autotune.tuner.timeline import startup_on_the_clock

COLUMNS = ("run", "config", "status", "start-up s", "load s", "warm-up s", "overhead s", "rest s", "process s")


def overhead_row(label: str, config: str, m: dict) -> dict | None:
    """The figures of one worker process's result (None when no process ran: a reused or refused trial)."""
    if m.get("wall_s") is None or m.get("load_s") is None or m.get("duplicate_of") is not None:
        return None
    startup = startup_on_the_clock(m) if m.get("process_s") is not None else None
    load, warmup = m["load_s"], m.get("warmup_s") or 0.0
    return {"run": label, "config": config, "status": m["status"], "startup": startup, "load": load,
            "warmup": warmup, "overhead": (startup or 0.0) + load + warmup,
            "rest": m["wall_s"] - (m.get("startup_s") or 0.0) - load - warmup, "process": m.get("process_s")}


def describe(candidate: dict) -> str:
    from autotune.config.candidate import Candidate

    return Candidate.from_dict(candidate).describe()


def study_rows(study_dir: Path) -> tuple[list[dict], dict[int, list[dict]]]:
    """Rows of the trials (results/trial-NNNNN.json) and of the confirmation runs, by trial number."""
    trials, confirms = [], {}
    for path in sorted((study_dir / "results").glob("trial-*.json")):
        record = json.loads(path.read_text())
        row = overhead_row(f"trial {record['trial']}", describe(record["candidate"]), record)
        if row is not None:
            row["trial"] = record["trial"]
            trials.append(row)
    for path in sorted((study_dir / "trials").glob("confirm-*/result.json")):
        number, index = path.parent.name.split("-")[1:3]
        row = overhead_row(f"confirm {int(number)}.{index}", f"as trial {int(number)}", json.loads(path.read_text()))
        if row is not None:
            confirms.setdefault(int(number), []).append(row)
    return trials, confirms


def fmt(value) -> str:
    return "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))


def table(rows: list[dict]) -> str:
    keys = ("run", "config", "status", "startup", "load", "warmup", "overhead", "rest", "process")
    cells = [list(COLUMNS)] + [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def cache_reuse_summary(trials: list[dict], confirms: dict[int, list[dict]]) -> str | None:
    """The confirmed configuration's overhead with a cold cache (its trial) and a warm one (its confirmations)."""
    for number, runs in confirms.items():
        trial = next((t for t in trials if t["trial"] == number), None)
        if trial is None:
            continue
        warm = statistics.median(r["overhead"] for r in runs)
        warm_warmup = statistics.median(r["warmup"] for r in runs)
        return (f"trial {number} ({trial['config']}): overhead {trial['overhead']:.1f} s with the study's compile "
                f"cache as it was (warm-up {trial['warmup']:.1f} s); its {len(runs)} confirmation run(s), the "
                f"cache warm: median {warm:.1f} s (warm-up {warm_warmup:.1f} s), "
                f"{warm / trial['overhead']:.2f}x")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--root", default="studies")
    args = parser.parse_args(argv)
    study_dir = Path(args.root) / args.study
    if not (study_dir / "results").is_dir():
        parser.error(f"no results under {study_dir}: give the study's --root and --study")
    trials, confirms = study_rows(study_dir)
    print(table(trials + [r for runs in confirms.values() for r in runs]))
    compiles = [("compile=" in t["config"] or "loop=" in t["config"], t["overhead"]) for t in trials]
    compiled = [overhead for compiling, overhead in compiles if compiling]
    eager = [overhead for compiling, overhead in compiles if not compiling]
    if eager:
        print(f"\noverhead, trials that compile nothing: median {statistics.median(eager):.1f} s ({len(eager)})")
    if compiled:
        print(f"overhead, compiled trials: median {statistics.median(compiled):.1f} s ({len(compiled)})")
    summary = cache_reuse_summary(trials, confirms)
    if summary:
        print("cache reuse: " + summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
