"""Which knob values a study has measured: for every knob of the study's space and every value it can
take, the trials that ran a configuration with it (to a figure: ok, or stopped early as hopeless), those
that tried and failed (unsupported, crash, timeout, ...), and values never drawn. The values the machine
or the model left out of the space are listed with their reason. (Issue 3: every seed knob measured at
least once in the study.)

    python benchmarks/knob_coverage.py --study g24 --root studies [--storage URL]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from autotune.tuner.coverage import ran_trials, reachable, tally  # noqa: E402
from autotune.config.space import SearchSpace  # noqa: E402
from autotune.config.settings import default_storage_url  # noqa: E402
from autotune.tuner.study import STUDY_ATTR, load_study  # noqa: E402


def coverage(study: optuna.Study) -> tuple[list[dict], list[tuple]]:
    """Rows (knob, value, measured trial numbers, failed trial numbers) and the space's left-out values."""
    space = SearchSpace.from_dict(study.user_attrs[STUDY_ATTR]["space"])
    measured, failed = tally(space, ran_trials(study.trials))
    rows = [{"knob": knob.name, "value": value, "measured": sorted(measured.get((knob.name, value), [])),
             "failed": sorted(failed.get((knob.name, value), []))}
            for knob in reachable(space) for value in knob.values]
    return rows, list(space.left_out)


def table(rows: list[dict], left_out: list[tuple]) -> str:
    def numbers(values: list[int]) -> str:
        return "-" if not values else (", ".join(map(str, values[:8])) + (f" (+{len(values) - 8})" if len(values) > 8 else ""))

    lines = [f"{'knob':28s} {'value':20s} {'measured (trials)':34s} failed (trials)"]
    for r in rows:
        lines.append(f"{r['knob']:28s} {str(r['value']):20s} {numbers(r['measured']):34s} {numbers(r['failed'])}")
    never = [r for r in rows if not r["measured"]]
    lines.append("")
    lines.append(f"{len(rows) - len(never)} of {len(rows)} knob values measured; never measured: "
                 + (", ".join(f"{r['knob']}={r['value']}" + (" (failed)" if r["failed"] else "") for r in never)
                    or "none"))
    if left_out:
        lines.append("left out of the space here:")
        lines += [f"  {knob}={value}: {why}" for knob, value, why in left_out]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True)
    parser.add_argument("--root", default="studies", help="the studies folder (for the default SQLite storage)")
    parser.add_argument("--storage", default=None,
                        help="the study's storage URL or journal file (default: SQLite under --root)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    storage = args.storage or default_storage_url(args.root, args.study)
    study = load_study(args.study, storage)
    rows, left_out = coverage(study)
    print(json.dumps(rows) if args.json else table(rows, left_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
