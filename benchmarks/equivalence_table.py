"""A study's trials as a table of equivalence: each configuration against the baseline and against float32, with
the verdict of each gate rule (autotune.config.gate). Issue 28's per-knob table is a study of every knob value
alone (`studies_gpu.sh OUT q`); this prints it as Markdown, in trial order:

    configuration | top-1 | KL | top-1 f32 | KL f32 | prefix | margin | baseline rule | noise floor

    python benchmarks/equivalence_table.py --study smolknobs --root OUT/studies [--min-agreement 0.99]
    python benchmarks/equivalence_table.py --study smolknobs --storage sqlite:///smolknobs.db

It reads the trials' result files (`<root>/<study>/results/trial-*.json`), or with `--storage` what the study
recorded of each trial (its measurement and configuration, as the study's file brought back from a GPU machine
has them); a trial with no scores (failed, stopped early, not run) gets its status instead of figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autotune.config.candidate import Candidate  # noqa: E402
from autotune.config.gate import Gate  # noqa: E402
from autotune.config.measurement import Measurement  # noqa: E402

HEADER = ("configuration", "top-1", "KL", "top-1 f32", "KL f32", "prefix", "margin", "baseline rule", "noise floor")


def figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def row(record: dict, min_agreement: float) -> list[str]:
    """One trial's cells."""
    m = Measurement.from_dict(record)
    config = Candidate.from_dict(record["candidate"]).describe()
    if not m.ok or m.top1_agreement is None:
        return [config] + ["-"] * 6 + [f"{m.status} ({m.failure_kind or '-'})"] * 2
    verdicts = ["yes" if Gate(rule, min_agreement).passes(m) else "no" for rule in ("baseline", "noise-floor")]
    return [config, figure(m.top1_agreement, ".3f"), figure(m.mean_kl, ".2g"), figure(m.float32_top1_agreement, ".3f"),
            figure(m.float32_mean_kl, ".2g"), figure(m.prefix_match, ".3f"), figure(m.divergence_margin, ".3f"),
            *verdicts]


def result_files(results: Path) -> list[dict]:
    """The trials' result files under `results`, in trial order."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(results.glob("trial-*.json"))]


def recorded(study: str, storage: str) -> list[dict]:
    """What study `study` in `storage` recorded of each trial that ran (a duplicate of an earlier one aside), in
    trial order: its measurement's figures and its configuration."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    return [{**t.user_attrs, "candidate": json.loads(t.user_attrs["candidate"])} for t in trials
            if "candidate" in t.user_attrs and t.user_attrs.get("duplicate_of") is None and "status" in t.user_attrs]


def table(records: list[dict], min_agreement: float) -> str:
    """The Markdown table of `records` (result files or recorded trials)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for record in records:
        lines.append("| " + " | ".join(row(record, min_agreement)) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--root", default="studies", help="the studies folder (autotune search --root)")
    parser.add_argument("--storage", help="the study's storage (e.g. sqlite:///smolknobs.db) instead of its folder")
    parser.add_argument("--min-agreement", type=float, default=0.99)
    args = parser.parse_args(argv)
    if args.storage:
        print(table(recorded(args.study, args.storage), args.min_agreement))
        return 0
    results = Path(args.root) / args.study / "results"
    if not results.is_dir():
        print(f"no results folder {results}: give the study's --root or --storage", file=sys.stderr)
        return 2
    print(table(result_files(results), args.min_agreement))
    return 0


if __name__ == "__main__":
    sys.exit(main())
