"""Search efficiency (issue 7): how much of an exhaustive grid's GPU time the tuner's sampler needs to get
within 5 % of the grid's best configuration.

Two steps:

1. `grid`: measure every configuration of a search space once, as a study's trials (each in a fresh worker,
   exactly as `autotune search` does, with early stopping off). Writes a table: each configuration's
   decode tok/s, whether it is feasible, and the seconds its trial took (0 for a configuration recorded
   without a launch: an invalid combination, or one over the --vram budget).

       python benchmarks/search_efficiency.py grid --model random:gemma-2b --device cuda \\
           --space benchmarks/data/grid-space.yaml --max-new-tokens 256 \\
           --prompts benchmarks/data/one-prompt.jsonl --out grid.json

   A grid longer than one GPU session goes on where it stopped: run the same command with the same --root
   (bring the folder back from the GPU machine, without its compile caches). The configurations measured
   already keep their figures and seconds; the ones whose trial was cut off are measured again. `table`
   writes the table of such a study as it stands, measuring nothing (here, from the folder brought back):

       python benchmarks/search_efficiency.py table --root .gpu-out/grid --out grid.json

2. `replay`: run the tuner's sampler as `autotune search` does (the baseline, the seed recipe, up to
   COVER_LIMIT covering trials of autotune.tuner.coverage chosen from the pool the study's seed draws, then
   Optuna's TPESampler with that seed) over the same space many times, answering each trial from the table
   instead of the GPU: the objective and constraints a study would have recorded, and the trial's measured
   seconds as its cost. A configuration seen before in the same run costs nothing (the tuner reuses it).
   Prints, per seed, the GPU seconds spent until the best feasible value is within 5 % of the grid's best, as
   a share of the whole grid's seconds, and the median over seeds. `--sampler` picks what is replayed:
   `tuner` (as above), `tpe` (no covering trials: `autotune search --no-cover`), `random` (Optuna's
   RandomSampler after the baseline and the seed recipe: the reference a search should beat), or `all`
   (the default: the three, one table each).

       python benchmarks/search_efficiency.py replay grid.json --seeds 20

A replay answers from measurements, so its figures hold as far as the grid's measurements do: it leaves
out measurement noise between two runs of one configuration, and early stopping (which would make the
sampler's slow trials cheaper still).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from autotune.config.candidate import Candidate  # noqa: E402
from autotune.config.measurement import Measurement  # noqa: E402
from autotune.config.space import SearchSpace  # noqa: E402
from autotune.tuner import coverage  # noqa: E402
from autotune.config.gate import Gate  # noqa: E402
from autotune.tuner.records import constraint_values  # noqa: E402
from autotune.tuner.seeds import seed_recipe  # noqa: E402
from autotune.tuner.study import STUDY_ATTR  # noqa: E402
from autotune.tuner.trials import counts_toward_trials, is_feasible, untold_candidate  # noqa: E402

WITHIN = 0.05
# covering trials in a replay: the tuner's limit for `autotune search --trials 20` (half of them)
COVER_LIMIT = 10


# ---- step 1: the grid ------------------------------------------------------------------------------

def measure_grid(args) -> dict:
    from autotune.config.settings import SearchSettings
    from autotune.config.workload import Workload
    from autotune.tuner.local_workers import parse_gpus, run_local_workers, shared_storage_url
    from autotune.tuner.loop import Tuner
    from autotune.tuner.shared import record_budget

    workload_kw = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    workload = Workload.from_file(args.prompts, **workload_kw) if args.prompts else Workload.default(**workload_kw)
    root = args.root or tempfile.mkdtemp(prefix="autotune-grid-")
    gpus = parse_gpus(args.gpus) if args.gpus else ()
    # several devices: one worker each on a journal file, as `autotune search --gpus` runs them
    storage = shared_storage_url(None, root, args.study, len(gpus)) if gpus else None
    settings = SearchSettings(
        model=args.model, workload=workload, study_name=args.study, space=args.space, device=args.device,
        root=root, storage=storage, repeats=args.repeats, warmup=args.warmup, trial_timeout=args.trial_timeout,
        confirm=0, early_stop=0.0, max_retry=0, vram=args.vram, max_initial_failures=10**6, cover=False)
    tuner = Tuner(settings, report=print_event)
    tuner.prepare()  # an existing study under --root (a grid cut short by the end of a GPU session) goes on
    resumed = bool(tuner.study.trials)
    tuner.enqueue_seeds()
    configurations = unique(tuner.space.candidates())
    missing = to_measure(tuner.study, tuner.space, configurations)
    for candidate in missing:
        tuner.study.enqueue_trial(tuner.space.params_of(candidate))
    # every trial of the study runs once (repeats of the baseline and the seed recipe are reused, not measured);
    # the invalid combinations are recorded without a process and do not count toward the trials
    invalid = sum(tuner.space.invalid_reason(c) is not None for c in missing)
    settings = replace(settings, trials=sum(map(counts_toward_trials, tuner.study.trials)) - invalid)
    print(f"grid of {len(configurations)} configurations of {args.space}; study under {root}"
          f"{f' on devices {args.gpus}' if gpus else ''}"
          f"{f'; {len(configurations) - len(missing)} measured or enqueued before, {len(missing)} to go' if resumed else ''}",
          flush=True)
    if gpus:
        record_budget(tuner.study, settings.trials)
        run_local_workers(settings, gpus, print_worker_event)
        study = tuner.study  # (a journal storage reads what the workers wrote)
    else:
        tuner.settings = settings
        study = tuner.run()
    return grid_table(study, tuner.space, args.model, args.device)


def print_worker_event(event: str, **info) -> None:
    """The workers' own lines (each trial's end among them), marked with their device."""
    if event == "worker_line":
        print(f"  [gpu {info['gpu']}] {info['line']}", flush=True)
    elif event == "orphans_failed":
        print(f"  trial(s) {info['failed']} left running by a worker that is gone: failed, measured again", flush=True)
    elif event in ("worker_started", "worker_stopped"):
        print(f"  {event.replace('_', ' ')}: {info}", flush=True)


def unique(candidates) -> list[Candidate]:
    seen, out = set(), []
    for candidate in candidates:
        if candidate.key() not in seen:
            seen.add(candidate.key())
            out.append(candidate)
    return out


def settled(trial) -> bool:
    """Whether a trial measured its configuration: completed, or failed with what the configuration did (a
    crash, a timeout, an unsupported combination). Not a trial whose worker died with the GPU machine taken
    back (`worker_died`), nor one never told (no candidate recorded): those configurations are measured again,
    and their seconds, which run to the moment they were failed, are no trial's cost."""
    if trial.user_attrs.get("duplicate_of") is not None or "candidate_key" not in trial.user_attrs:
        return False
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") not in (None, "worker_died"))


def to_measure(study: optuna.Study, space: SearchSpace, configurations: list[Candidate]) -> list[Candidate]:
    """The configurations of the grid that the study has not measured and has not enqueued."""
    done = {t.user_attrs["candidate_key"] for t in study.get_trials(deepcopy=False) if settled(t)}
    waiting = waiting_keys(study, space)
    return [c for c in configurations if c.key() not in done and c.key() not in waiting]


def waiting_keys(study: optuna.Study, space: SearchSpace) -> set[str]:
    """The configurations of trials enqueued and not started yet (by a run cut short, or another worker's)."""
    waiting = (untold_candidate(space, t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    return {candidate.key() for candidate in waiting if candidate is not None}


def grid_table(study: optuna.Study, space: SearchSpace, model: str, device: str) -> dict:
    rows = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if not settled(t):
            continue
        key = t.user_attrs["candidate_key"]
        if key in rows and rows[key]["feasible"]:
            continue  # measured before, completed: the first measurement stands
        launched = t.user_attrs.get("failure_kind") not in ("invalid_combination", "over_budget")
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if launched else 0.0
        feasible = is_feasible(t)
        rows[key] = {
            "config": t.user_attrs["config"], "candidate": json.loads(t.user_attrs["candidate"]),
            "status": t.user_attrs.get("status"), "value": t.value if feasible else 0.0, "feasible": feasible,
            "seconds": seconds, "trial": t.number}
    return {"space": space.to_dict(), "model": model, "device": device, "rows": rows}


def table_of_study(args) -> dict:
    """The grid's table from its study as it stands (a journal file or a database brought back from the GPU
    machine), without measuring anything; says which configurations are not measured yet."""
    from autotune.tuner.storage import storage_for

    storage = args.storage or str(Path(args.root) / f"{args.study}.log")
    study = optuna.load_study(study_name=args.study, storage=storage_for(storage, heartbeat_interval=None))
    attrs = study.user_attrs[STUDY_ATTR]
    space = SearchSpace.from_dict(attrs["space"])
    table = grid_table(study, space, attrs["model"], attrs["device"])
    missing = [c for c in unique(space.candidates()) if c.key() not in table["rows"]]
    for c in missing:
        print(f"not measured yet: {c.describe()}", file=sys.stderr)
    table["missing"] = [c.to_dict() for c in missing]
    return table


def print_event(event: str, **info) -> None:
    if event == "end":
        m = info["measurement"]
        what = f"{m.decode_tokens_per_s:.1f} tok/s" if m.ok else f"{m.status} ({m.failure_kind})"
        print(f"  trial {info['number']}: {info['candidate'].describe()}: {what}", flush=True)


# ---- step 2: the replay ----------------------------------------------------------------------------

# what a replay can replay, and the heading of its table
SAMPLERS = {"tuner": "the tuner (covering trials, then TPE)", "tpe": "TPE alone (--no-cover)",
            "random": "random sampling (the reference)"}


def replay(grid: dict, seed: int, sampler: str = "tuner") -> dict:
    """One run of `sampler` (SAMPLERS) over the grid's space, answered from the grid. Returns the seconds and
    trials spent until the best feasible value came within WITHIN of the grid's best."""
    space = SearchSpace.from_dict(grid["space"])
    rows = grid["rows"]
    target = (1 - WITHIN) * max(r["value"] for r in rows.values() if r["feasible"])
    total = sum(r["seconds"] for r in rows.values())
    draws = optuna.samplers.RandomSampler(seed=seed) if sampler == "random" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=draws)
    # as autotune search does: the baseline, the seed recipe, then covering trials (autotune.tuner.coverage)
    study.enqueue_trial(space.params_of(Candidate()))
    recipe = seed_recipe(space)
    if recipe is not None:
        study.enqueue_trial(space.params_of(recipe))
    cover = sampler == "tuner"
    pool = coverage.pool(space, seed, None) if cover else []  # the study's pool: its ties go the seed's way
    spent, seen, best, trials, covers, ran = 0.0, set(), 0.0, 0, 0, []
    while best < target and trials < 20 * len(rows):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if cover and covers < COVER_LIMIT and not waiting:
            pick = coverage.next_cover(space, pool, *coverage.tally(space, ran), seen)
            if pick is not None:
                study.enqueue_trial(space.params_of(pick))
                covers += 1
        trial = study.ask()
        candidate = space.suggest(trial)
        key = candidate.key()
        row = rows.get(key)
        if row is None:
            raise SystemExit(f"configuration {space.suggest(trial).describe()} is not in the grid: measure the "
                             "grid with the same space")
        if key not in seen:  # the tuner measures a configuration once and reuses it
            spent += row["seconds"]
            seen.add(key)
            ran.append((trial.number, candidate, row.get("status") or ("ok" if row["feasible"] else "unsupported")))
        trials += 1
        m = Measurement(status="ok" if row["feasible"] else "unsupported", decode_tokens_per_s=row["value"],
                        equivalence_meaningful=False)
        for name, value in constraint_values(m, Gate()).items():
            trial.set_constraint(name, value)
        study.tell(trial, row["value"])
        if row["feasible"]:
            best = max(best, row["value"])
    return {"seed": seed, "seconds": spent, "share": spent / total if total else None, "trials": trials,
            "distinct": len(seen), "reached": best >= target}


def replay_all(grid: dict, seeds: int, sampler: str = "tuner") -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [replay(grid, seed, sampler) for seed in range(seeds)]


def replay_summaries(grid: dict, seeds: int, sampler: str) -> str:
    """One summary per sampler (`all`: every one of SAMPLERS), each headed by what it replays."""
    chosen = SAMPLERS if sampler == "all" else (sampler,)
    return "\n\n".join(f"== {SAMPLERS[name]}\n" + summary(grid, replay_all(grid, seeds, name)) for name in chosen)


def summary(grid: dict, runs: list[dict]) -> str:
    rows = grid["rows"]
    feasible = [r for r in rows.values() if r["feasible"]]
    best = max(feasible, key=lambda r: r["value"])
    total = sum(r["seconds"] for r in rows.values())
    shares = [r["share"] for r in runs]
    lines = [f"grid: {len(rows)} configurations ({len(feasible)} feasible), {total:.0f} s of trials; best "
             f"{best['value']:.1f} tok/s ({best['config']}); target {(1 - WITHIN) * best['value']:.1f} tok/s",
             "seed | GPU s to target | share of the grid | trials | distinct configurations"]
    lines += [f"{r['seed']} | {r['seconds']:.0f} | {100 * r['share']:.1f} % | {r['trials']} | {r['distinct']}"
              for r in runs]
    lines.append(f"median share {100 * statistics.median(shares):.1f} %, worst {100 * max(shares):.1f} % over "
                 f"{len(runs)} seeds; target reached in {sum(r['reached'] for r in runs)} of {len(runs)}")
    return "\n".join(lines)


def add_replay_options(parser: argparse.ArgumentParser, when: str) -> None:
    parser.add_argument("--seeds", type=int, default=20, help=f"replay this many seeds {when}".rstrip())
    parser.add_argument("--sampler", choices=(*SAMPLERS, "all"), default="all",
                        help="what the replay replays (default: all, one table each)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    grid = sub.add_parser("grid", help="measure every configuration of a space once")
    grid.add_argument("--model", required=True)
    grid.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    grid.add_argument("--space", default=str(ROOT / "benchmarks" / "data" / "grid-space.yaml"))
    grid.add_argument("--prompts", default=None)
    grid.add_argument("--batch-size", type=int, default=1)
    grid.add_argument("--max-new-tokens", type=int, default=64)
    grid.add_argument("--repeats", type=int, default=3)
    grid.add_argument("--warmup", type=int, default=1)
    grid.add_argument("--trial-timeout", type=float, default=300)
    grid.add_argument("--vram", type=int, default=None, help="budget in bytes")
    grid.add_argument("--study", default="grid")
    grid.add_argument("--root", default=None, help="folder of the grid's study (default: a temporary one)")
    grid.add_argument("--gpus", default=None,
                      help="measure on these devices side by side (0,1), one worker each, the study in a journal file "
                           "under --root; the seconds of each trial stay its own")
    grid.add_argument("--out", required=True, help="the grid's table (JSON)")
    add_replay_options(grid, "right after the grid")
    grid.add_argument("--grid-only", action="store_true", help="measure and write the table, no replay")
    tab = sub.add_parser("table", help="write the table of a grid's study as it stands (brought back from the GPU "
                                       "machine), measuring nothing; the replay follows unless --grid-only")
    tab.add_argument("--root", default=None, help="the grid's folder (its journal file is ROOT/STUDY.log)")
    tab.add_argument("--storage", default=None, help="the study's storage, where it is not ROOT/STUDY.log")
    tab.add_argument("--study", default="grid")
    tab.add_argument("--out", required=True, help="the grid's table (JSON)")
    add_replay_options(tab, "right after the table")
    tab.add_argument("--grid-only", action="store_true", help="write the table, no replay")
    rep = sub.add_parser("replay", help="replay the sampler over a measured grid")
    rep.add_argument("grid", help="a table written by the grid step")
    add_replay_options(rep, "")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.step in ("grid", "table"):
        if args.step == "table" and not (args.root or args.storage):
            raise SystemExit("table: give the grid's folder (--root) or its study's storage (--storage)")
        grid = measure_grid(args) if args.step == "grid" else table_of_study(args)
        Path(args.out).write_text(json.dumps(grid, indent=1), encoding="utf-8")
        print(f"grid table written to {args.out}")
        if args.grid_only:
            return 0
        if grid.get("missing"):
            print(f"{len(grid['missing'])} configuration(s) not measured yet: the replay would ask for them; run "
                  "the grid again with the same --root to measure them")
            return 1
    else:
        grid = json.loads(Path(args.grid).read_text(encoding="utf-8"))
    print(replay_summaries(grid, args.seeds, args.sampler))
    return 0


if __name__ == "__main__":
    sys.exit(main())
