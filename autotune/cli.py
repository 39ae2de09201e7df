"""The `autotune` command: a thin click layer over autotune.study and autotune.preset."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from autotune import interrupt
from autotune.errors import AutotuneError, InputError
from autotune.progress import JsonProgress, Progress

# Wide enough for the trial table when the output is a file or a pipe (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
# Where human-readable output goes when stdout carries JSON lines (--json-progress).
err_console = Console(highlight=False, soft_wrap=True, stderr=True, width=None if sys.stderr.isatty() else 160)


class CliError(click.ClickException):
    """An AutotuneError at the edge: one line on stderr and the error's own exit code, no traceback."""

    def __init__(self, error: AutotuneError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


def run_guarded(action):
    try:
        return action()
    except AutotuneError as exc:
        raise CliError(exc) from None
    except KeyboardInterrupt:  # one not caught nearer (while inspecting the machine, confirming, ...)
        err_console.print("interrupted")
        raise SystemExit(130) from None


def stop_cleanly_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind where the tuner waits (autotune.interrupt): the running worker is killed on
    the way out and its trial marked; exit codes 130 and 143."""
    interrupt.install()


@click.group(help=__doc__.split(":")[0] + ": tune Hugging Face transformers inference by measurement.")
@click.version_option(package_name="autotune")
def main():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- search --------------------------------------------------------------------------------------

def _fmt(value, spec: str, scale: float = 1.0) -> str:
    from autotune.report import fmt

    return fmt(value, spec, scale)


def agreement_caption(random_weights: bool) -> str:
    """What a trials table's agreement columns mean (and that random weights leave them unjudged)."""
    lines = ["(rw): random weights: the agreement figures are recorded but not judged"] if random_weights else []
    lines.append("top-1 agr.: teacher-forced top-1 agreement with the baseline (the model's own forward); prefix: "
                 "share of the baseline's greedy continuation generated before the first differing token (what "
                 "the decoding changes: assisted decoding, the compiled loops)")
    lines.append("margin: the baseline's log-probability gap between its two likeliest tokens where "
                 "the greedy text first differs, the largest over prompts: about one bf16 step (0.0625) is a "
                 "near-tie that another order of the sums turns; a wide one is a real change")
    return "\n".join(lines)


def trials_table(study) -> Table:
    from optuna.trial import TrialState

    table = Table(title=f"study {study.study_name}")
    for column in ("#", "role", "config", "decode tok/s", "peak MiB", "recompiles", "top-1 agr.", "prefix", "margin",
                   "status"):
        table.add_column(column, justify="right" if column not in ("role", "config", "status") else "left")
    random_weights = False
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        mark = ""
        if a.get("equivalence_meaningful") is False:
            mark, random_weights = " (rw)", True
        feasible = t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())
        status = a.get("status") or t.state.name.lower()
        if a.get("failure_kind"):
            status += f" ({a['failure_kind']})"
        elif t.state == TrialState.COMPLETE and not feasible:
            status += " (below --min-agreement)"
        if a.get("duplicate_of") is not None:
            status += f" = #{a['duplicate_of']}"
        table.add_row(str(t.number), a.get("role", "-"), a.get("config", "-"),
                      _fmt(a.get("decode_tokens_per_s"), ".1f"), _fmt(a.get("peak_memory_bytes"), ".0f", 2**20),
                      _fmt(a.get("recompiles"), "d"), _fmt(a.get("top1_agreement"), ".3f") + mark,
                      _fmt(a.get("prefix_match"), ".3f") + mark, _fmt(a.get("divergence_margin"), ".3f"), status)
    table.caption = agreement_caption(random_weights)
    return table


@main.command(help="Run (or resume) a study over inference configurations of MODEL and export the best one.\n\n"
                   "Each trial builds, warms, measures and compares one configuration in a fresh process. "
                   "Rerunning the same command resumes the study up to --trials in total.")
@click.option("--model", required=True,
              help="Model folder, hub id, or random:<architecture> (random:gemma-2b, random:llama-3-8b, "
                   "random:mistral-7b, random:qwen2.5-0.5b: random weights, for speed only).")
@click.option("--study", "study_name", help="Study name (default: the model folder's name).")
@click.option("--trials", type=int, default=20, show_default=True, help="Total trials of the study (resume counts earlier ones).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: cuda when available, else cpu.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--space", default="default", show_default=True, help="Search space: a name under search_spaces/ or a YAML file.")
@click.option("--prompts", type=click.Path(dir_okay=False), help="JSONL file, one {\"prompt\": ...} per line (default: built-in code prompts).")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--assistant", help="Assistant model for assisted decoding (folder or hub id); enables that knob.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="Constraint: teacher-forced top-1 agreement with the baseline.")
@click.option("--sampling", is_flag=True,
              help="Measure seeded sampling instead of greedy decoding (equivalence: teacher-forced distributions).")
@click.option("--sampling-seed", type=int, default=0, show_default=True,
              help="Seed of the sampled workload (torch is seeded with it before each batch).")
@click.option("--vram", help="Memory budget: 24GB, 24GiB, 512MiB, ... or a fraction of the device's memory "
                             "(0.5). Candidates estimated over it are not launched; on CUDA workers are capped to it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the TPE sampler.")
@click.option("--trial-timeout", type=float, default=900, show_default=True, help="Seconds before a trial's worker is killed.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Measured passes over the prompts (median).")
@click.option("--warmup", type=int, default=1, show_default=True, help="Unmeasured passes first (compilation happens here).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Preset path (default: studies/<study>.preset.json).")
@click.option("--root", default="studies", show_default=True, help="Folder for the default storage, results and presets.")
@click.option("--new-study", is_flag=True, help="Delete an existing study of this name and start over.")
@click.option("--confirm", type=int, default=3, show_default=True,
              help="Re-measure the best configuration this many times in fresh processes (stability check).")
@click.option("--max-retry", type=int, default=1, show_default=True, help="Retries of a trial that crashed, hung or errored.")
@click.option("--early-stop", type=float, default=0.5, show_default=True,
              help="Stop a trial after its first timed pass when it runs under this fraction of the best decode "
                   "tok/s so far (it is PRUNED: it cannot win); 0: run every trial to the end.")
@click.option("--cover/--no-cover", default=True, show_default=True,
              help="After the baseline and the seed recipe, run covering trials (up to half of --trials) until every "
                   "knob value of the space has been measured; --no-cover: the sampler draws every trial.")
@click.option("--max-initial-failures", type=int, default=3, show_default=True,
              help="Stop the study when this many configurations after the baseline failed and none ran.")
@click.option("--heartbeat-interval", type=int, default=10, show_default=True, help="Seconds between heartbeats of a running trial.")
@click.option("--grace-period", type=int, default=60, show_default=True,
              help="Seconds without a heartbeat after which a running trial is considered dead.")
@click.option("--quiet", is_flag=True, help="No progress lines; the final table and preset path only.")
@click.option("--json-progress", is_flag=True,
              help="Progress as JSON lines on stdout (one object per event: trial, phase, elapsed_s, best); "
                   "the table and messages go to stderr.")
@click.option("--gpus", help="Run one worker per device on this host (0,1,2,3; each worker's trials see one device) "
                             "on a shared storage: --storage postgresql://..., or by default a journal file "
                             "studies/<study>.log. A SQLite --storage is refused for more than one.")
def search(model, study_name, trials, device, storage, space, prompts, batch_size, max_new_tokens, assistant,
           min_agreement, sampling, sampling_seed, vram, seed, trial_timeout, repeats, warmup, out, root,
           new_study, confirm, max_retry, early_stop, cover, max_initial_failures, heartbeat_interval, grace_period, quiet,
           json_progress, gpus):
    from autotune.study import Tuner

    stop_cleanly_on_signals()
    options = click.get_current_context().params
    if gpus:
        return search_on_gpus(options)

    def action():
        settings = settings_from_options(options)
        out_console = err_console if json_progress else console
        report = JsonProgress() if json_progress else Progress(console, quiet)
        tuner = Tuner(settings, report=report)
        tuner.prepare()
        out_console.print(f"study {settings.study_name!r} in {settings.storage_url}: "
                          f"{tuner.finished_count()} of {trials} trials done")
        try:
            tuner.run()
        except KeyboardInterrupt:
            out_console.print("interrupted: the running trial was stopped and marked failed; "
                              "rerun the same command to resume")
            raise SystemExit(130)
        finally:
            if tuner.study is not None:
                out_console.print(trials_table(tuner.study))
        path = tuner.confirm_and_export(out)
        out_console.print(f"preset written to {path}")
        if json_progress:
            report("preset", path=str(path), best=tuner.best_value())

    run_guarded(action)


def budget_option(text: str | None, device: str) -> int | None:
    """--vram in bytes. A fraction (0.5) needs the device's total memory, asked of a child process so that
    this one never initialises CUDA."""
    if text is None:
        return None
    from autotune import environment
    from autotune.memory import is_fraction, parse_budget

    total = environment.probe(device)["total_memory_bytes"] if is_fraction(text) else None
    return parse_budget(text, total)


def _test_faults() -> tuple:
    """Test-only fault injection: AUTOTUNE_TEST_FAULTS="2:oom,pad_to_multiple_of=8:kill" (autotune.worker.faults)."""
    from autotune.worker.faults import parse_spec

    return tuple(parse_spec(os.environ.get("AUTOTUNE_TEST_FAULTS", "")))


# ---- estimate ------------------------------------------------------------------------------------

def _estimate_environment(device: str) -> dict:
    """What `for_environment` needs, without touching CUDA in this process. --device cuda on a machine
    without CUDA still estimates (pure Python), assuming a card with bfloat16 and this machine's packages."""
    import importlib.util

    from autotune import environment
    from autotune.errors import InputError

    if device == "cpu":
        import psutil

        return {"device": "cpu", "has_bf16": True, "has_flash_attn": False, "has_flex_attention": False,
                "total_memory_bytes": psutil.virtual_memory().total}
    try:
        return environment.probe(device)
    except InputError:
        if device == "auto":
            raise
    return {"device": "cuda", "has_bf16": True, "total_memory_bytes": None,
            "has_flash_attn": importlib.util.find_spec("flash_attn") is not None,
            "has_flex_attention": importlib.util.find_spec("torch.nn.attention.flex_attention") is not None,
            "has_triton": environment.triton_imports()}


def _mib(n) -> str:
    return "-" if not n else f"{n / 2**20:,.1f}"


@main.command(help="Estimate the peak memory of every candidate of a search space, without loading weights.\n\n"
                   "Sizes come from the model's config (parameters counted on the meta device), the workload's "
                   "prompt lengths and the candidate's knobs; each term is shown, and whether it fits --vram.")
@click.option("--model", required=True, help="Model folder or hub id (its config.json is all that is read).")
@click.option("--vram", help="Memory budget: 24GB, 24GiB, 512MiB, ... or a fraction of the device's memory (0.5).")
@click.option("--space", default="default", show_default=True, help="Search space: a name under search_spaces/ or a YAML file.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Device to estimate for (cuda works on a machine without one).")
@click.option("--prompts", type=click.Path(dir_okay=False), help="JSONL file, one {\"prompt\": ...} per line (default: built-in code prompts).")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--assistant", help="Assistant model for assisted decoding (folder or hub id); enables that knob.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (candidate, estimate_bytes, terms, fits).")
def estimate(model, vram, space, device, prompts, batch_size, max_new_tokens, assistant, as_json):
    import json
    from dataclasses import replace

    from autotune.memory import Estimator, format_bytes, is_fraction, parse_budget
    from autotune.models import is_random
    from autotune.space import SearchSpace
    from autotune.study import resolve_model
    from autotune.workload import Workload

    def action():
        base_space = SearchSpace.load(space)
        settings_kw = dict(batch_size=batch_size, max_new_tokens=max_new_tokens)
        workload = Workload.from_file(prompts, **settings_kw) if prompts else Workload.default(**settings_kw)
        model_id = model if model.startswith("random:") else resolve_model(model)
        assistant_id = resolve_model(assistant) if assistant else None
        env = _estimate_environment(device)
        total = env.get("total_memory_bytes")
        if vram is not None and is_fraction(vram) and total is None:
            raise InputError(f"--vram {vram} is a fraction of the card's memory, and there is no CUDA device here to "
                        "read it from: give an amount, like 24GB or 24GiB")
        budget = None if vram is None else parse_budget(vram, total)
        the_space = base_space.for_environment(
            env["device"], batch_size=batch_size, assistant=assistant_id, has_bf16=env.get("has_bf16", True),
            has_flash_attn=env.get("has_flash_attn", False), has_flex_attention=env.get("has_flex_attention", False),
            has_triton=env.get("has_triton", False), random_weights=is_random(model_id))
        estimator = Estimator.for_model(model_id, workload, assistant=assistant_id)
        rows, invalid = [], 0
        for candidate in the_space.candidates():
            if candidate.decoding == "assisted":
                candidate = replace(candidate, assistant=assistant_id)
            if the_space.invalid_reason(candidate) is not None:
                invalid += 1
                continue
            rows.append((candidate, estimator(candidate, env["device"])))

        if as_json:
            click.echo(json.dumps([{"candidate": c.to_dict(), "config": c.describe(), "estimate_bytes": e.total,
                                    "terms": e.terms(), "fits": e.fits(budget), "budget_bytes": budget,
                                    "device": e.device, "dtype": e.dtype, "max_cache_len": e.max_cache_len}
                                   for c, e in rows], indent=1))
            return
        table = Table(title=f"memory estimates for {model} on {env['device']} (MiB)")
        columns = ("#", "config", "dtype", "weights", "KV cache", "assistant", "activations",
                   "context" if env["device"] == "cuda" else "process", "kernels", "allocator", "compile",
                   "total", "fits")
        for column in columns:
            table.add_column(column, justify="left" if column in ("config", "dtype", "fits") else "right")
        for number, (c, e) in enumerate(rows):
            fits = {None: "-", True: "yes", False: "[red]no[/red]"}[e.fits(budget)]
            table.add_row(str(number), c.describe(), e.dtype, _mib(e.weights), _mib(e.kv_cache), _mib(e.assistant),
                          _mib(e.activations), _mib(e.cuda_context or e.process_baseline), _mib(e.kernel_cache),
                          _mib(e.allocator_overhead), _mib(e.compile_workspace), _mib(e.total), fits)
        console.print(table)
        lengths = "tokenizer" if estimator.lengths_from == "tokenizer" else "UTF-8 bytes (an upper bound: no tokenizer)"
        console.print(f"{len(rows)} candidates ({invalid} invalid combinations left out); prompt lengths from "
                      f"{lengths}; KV cache length up to {max((e.max_cache_len for _, e in rows), default=0)} tokens")
        if budget is not None:
            fitting = sum(bool(e.fits(budget)) for _, e in rows)
            console.print(f"{fitting} of {len(rows)} fit in {format_bytes(budget)} ({vram})")
        if env["device"] == "cuda":
            console.print("CUDA constants (context, allocator, compile workspace) are not yet calibrated on a GPU: "
                          "see README, 'Memory budget'", style="dim")

    run_guarded(action)


# ---- export --------------------------------------------------------------------------------------

@main.command(help="Export a study's best feasible trial as a preset JSON file.")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--root", default="studies", show_default=True, help="Folder of the default storage and results.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Preset path (default: studies/<study>.preset.json).")
def export(study_name, storage, root, out):
    from autotune.study import default_preset_path, existing_study_url, export_study, load_study

    def action():
        study = load_study(study_name, existing_study_url(storage, root, study_name))
        path = export_study(study, out or default_preset_path(root, study_name), Path(root) / study_name)
        console.print(f"preset written to {path}")

    run_guarded(action)


@main.command(help="Import measurements whose result was saved but never told to Optuna (after a crash of the "
                   "orchestrator, a storage outage, or a trial failed from elsewhere).")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--root", default="studies", show_default=True, help="Folder of the default storage and results.")
@click.option("--grace-period", type=int, default=60, show_default=True,
              help="A RUNNING trial's result is imported only once it is older than this (its orchestrator is gone).")
def reconcile(study_name, storage, root, grace_period):
    from autotune.study import existing_study_url, reconcile_study

    def action():
        url = existing_study_url(storage, root, study_name)
        imported = reconcile_study(study_name, url, root, grace_period, report=Progress(console))
        console.print(f"{len(imported)} measurement(s) imported" + (f": trials {imported}" if imported else ""))

    run_guarded(action)


# ---- several workers on one study (autotune.workers) ----------------------------------------------

class WorkerProgress(Progress):
    """Progress, plus what workers sharing a study report."""

    def __call__(self, event: str, **info) -> None:
        if self.quiet:
            return
        if event == "waiting_baseline":
            console.print(f"trial {info['number']} waits for the study's baseline (measured by another worker)",
                          style="dim")
        elif event == "own_baseline":
            console.print(f"trial {info['number']}: this type of machine ({info['machine']}) has no baseline in the "
                          "study yet: measuring its own", style="dim")
        elif event == "fetched_baseline":
            console.print(f"took the study's baseline reference from the storage into {info['path']}", style="dim")
        elif event == "waiting_same":
            console.print(f"trial {info['number']} has the configuration trial {info['other']} is measuring now: "
                          "waiting to reuse its result", style="dim")
        elif event == "storage_down":
            console.print(f"the storage cannot be reached: trial {info['number']}'s measurement is saved in "
                          "results/; telling the study again every few seconds", style="dim")
        elif event == "worker_started":
            console.print(f"worker for gpu {info['gpu']} started (pid {info['pid']})")
        elif event == "worker_line":
            console.print(f"[gpu {info['gpu']}] {info['line']}", markup=False)
        elif event == "budget_changed":
            console.print(f"the study's total budget changes from {info['before']} to {info['after']} trials")
        elif event == "orphans_failed":
            console.print(f"trial(s) {info['failed']} were left running by workers of this host that are gone: "
                          "failed and retried")
        elif event == "worker_stopped":
            failed = f"; its running trial(s) {info['failed']} failed and retried" if info["failed"] else ""
            console.print(f"worker for gpu {info['gpu']} stopped (exit {info['code']}){failed}")
        else:
            super().__call__(event, **info)


def settings_from_options(options: dict, storage: str | None = None):
    """SearchSettings from the options of `search` (and `study create`, which takes the same ones)."""
    from autotune.study import SearchSettings, default_study_name
    from autotune.workload import Workload

    o = options
    workload_kw = dict(batch_size=o["batch_size"], max_new_tokens=o["max_new_tokens"], sampling=o["sampling"],
                       seed=o["sampling_seed"])
    workload = Workload.from_file(o["prompts"], **workload_kw) if o["prompts"] else Workload.default(**workload_kw)
    return SearchSettings(
        model=o["model"], workload=workload, study_name=o["study_name"] or default_study_name(o["model"]),
        trials=o["trials"], space=o["space"], device=o["device"], storage=storage or o["storage"], root=o["root"],
        assistant=o["assistant"], min_agreement=o["min_agreement"], seed=o["seed"],
        trial_timeout=o["trial_timeout"], repeats=o["repeats"], warmup=o["warmup"], new_study=o["new_study"],
        confirm=o["confirm"], max_retry=o["max_retry"], early_stop=o["early_stop"], cover=o["cover"],
        max_initial_failures=o["max_initial_failures"],
        heartbeat_interval=o["heartbeat_interval"], grace_period=o["grace_period"],
        command=shlex.join(["autotune", *sys.argv[1:]]), faults=_test_faults(),
        vram=budget_option(o["vram"], o["device"]))


def create_and_describe(settings, report):
    from autotune.workers import create_study

    creator = create_study(settings, report=report)
    how = "created" if creator.created else "exists already, with the same settings"
    console.print(f"study {settings.study_name!r} in {settings.storage_url} {how}: "
                  f"{len(creator.study.trials)} trial(s), a total budget of {settings.trials}")
    return creator


def search_on_gpus(options: dict) -> None:
    """`search --gpus`: make the study, run one worker per device on it, then confirm and export the best."""
    from autotune.workers import parse_gpus, run_local_workers, shared_storage_url

    def action():
        gpus = parse_gpus(options["gpus"])
        name = options["study_name"] or _default_study_name(options["model"])
        url = shared_storage_url(options["storage"], options["root"], name, len(gpus))
        report = WorkerProgress(console, options["quiet"])
        settings = settings_from_options(options, storage=url)
        creator = create_and_describe(settings, report)
        try:
            run_local_workers(settings, gpus, report)
        except KeyboardInterrupt:
            console.print("interrupted: the workers stopped and marked their trials failed; rerun the same command "
                          "to resume")
            raise SystemExit(130)
        finally:
            console.print(trials_table(creator.study))
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]  # the confirmation runs on the first device
        console.print(f"preset written to {creator.confirm_and_export(options['out'])}")

    run_guarded(action)


def _default_study_name(model: str) -> str:
    from autotune.study import default_study_name

    return default_study_name(model)


@main.group(help="Make a study once, for workers that share it (autotune worker).")
def study():
    pass


def _create(**options):
    def action():
        create_and_describe(settings_from_options(options), WorkerProgress(console, options["quiet"]))
        console.print("start workers with: autotune worker --study NAME --storage URL [--gpu N]")

    run_guarded(action)


study.add_command(click.Command(
    "create", callback=_create,
    params=[p for p in search.params if p.name not in ("out", "gpus", "json_progress")],
    help="Create a study with its search space, workload, budget (--trials, over all workers) and baseline "
         "recorded in it, so that workers need only its name and storage.\n\n"
         "Takes the options of 'autotune search'. Running it again with the same options changes nothing; "
         "another --trials changes the study's total budget."))


@main.command(help="Join a study made by 'autotune study create' and run its trials until the study's total "
                   "budget is reached over all workers. Start one per GPU, on one host or many, with the same "
                   "--study and --storage (PostgreSQL for several hosts).")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", required=True,
              help="Storage URL of the study (postgresql://user:password@host/db), or a journal file path "
                   "shared by workers of one host.")
@click.option("--gpu", help="Device index this worker's trials use (sets CUDA_VISIBLE_DEVICES for them).")
@click.option("--root", default="studies", show_default=True,
              help="Folder of this host's copy of results, logs and the baseline reference.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def worker(study_name, storage, gpu, root, quiet):
    from autotune.records import counts_toward_trials
    from autotune.storage import is_sqlite
    from autotune.workers import join_study

    stop_cleanly_on_signals()

    def action():
        if gpu is not None:
            if not gpu.isdigit():
                raise InputError(f"--gpu takes one device index (0, 1, ...), got {gpu!r}")
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything starts a process that sees devices
        if is_sqlite(storage):
            console.print("note: a SQLite storage takes one worker only; use PostgreSQL for several", style="dim")
        w = join_study(study_name, storage, root=root, gpu=gpu, report=WorkerProgress(console, quiet), faults=_test_faults())
        done = sum(map(counts_toward_trials, w.study.get_trials(deepcopy=False)))
        console.print(f"worker {w.identity['host']}:{w.identity['pid']} joined study {study_name!r}: "
                      f"{done} of {w.settings.trials} trials started")
        try:
            w.run()
        except KeyboardInterrupt:
            console.print("interrupted: the running trial was stopped and marked failed")
            raise SystemExit(130)
        console.print(f"the study's budget of {w.settings.trials} trials is reached")

    run_guarded(action)


# ---- show, report, dashboard ---------------------------------------------------------------------

def open_existing_study(study_name: str, storage: str | None, root: str):
    from autotune.study import existing_study_url, load_study

    url = existing_study_url(storage, root, study_name)
    return load_study(study_name, url), url


def show_table(rows: list[dict], study_name: str) -> Table:
    table = Table(title=f"study {study_name}: trials by decode tok/s (★ the exported one)")
    for column in ("#", "role", "config", "decode tok/s", "speed-up", "peak MiB", "warm-up s", "top-1 agr.",
                   "prefix", "margin", "feasible", "status"):
        table.add_column(column, justify="left" if column in ("role", "config", "status") else "right")
    random_weights = False
    for r in rows:
        mark = ""
        if r["equivalence_meaningful"] is False:
            mark, random_weights = " (rw)", True
        status = r["status"] + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
        if r["duplicate_of"] is not None:
            status += f" = #{r['duplicate_of']}"
        role = r["role"] + (" ★" if r["best"] else "")
        table.add_row(str(r["number"]), role, r["config"], _fmt(r["decode_tokens_per_s"], ".1f"),
                      _fmt(r["speedup"], ".2f"), _fmt(r["peak_memory_bytes"], ".0f", 2**20),
                      _fmt(r["warmup_s"], ".1f"), _fmt(r["top1_agreement"], ".3f") + mark,
                      _fmt(r["prefix_match"], ".3f") + mark, _fmt(r["divergence_margin"], ".3f"),
                      "yes" if r["feasible"] else "no", status,
                      style="bold" if r["best"] else ("cyan" if r["role"] in ("baseline", "seed-recipe") else None))
    table.caption = agreement_caption(random_weights)
    return table


@main.command(help="List a study's trials sorted by decode tok/s, with their measurements, feasibility and "
                   "failure kinds; the baseline and the seed recipe marked.")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--root", default="studies", show_default=True, help="Folder of the default storage.")
@click.option("--json", "as_json", is_flag=True, help="Print the trials as a JSON list instead of a table.")
def show(study_name, storage, root, as_json):
    from autotune.report import trial_rows

    def action():
        study, _ = open_existing_study(study_name, storage, root)
        rows = trial_rows(study)
        if as_json:
            click.echo(json.dumps(rows, indent=1, default=str))
        else:
            console.print(show_table(rows, study_name))

    run_guarded(action)


@main.command(help="Write one self-contained HTML report of a study: optimization history, decode tok/s "
                   "against peak memory with the budget, parameter importances, speed-up per knob value, "
                   "equivalence per trial and the exported preset.")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--root", default="studies", show_default=True, help="Folder of the default storage and preset.")
@click.option("--preset", type=click.Path(dir_okay=False),
              help="Preset to summarize (default: studies/<study>.preset.json when it exists).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="HTML file (default: studies/<study>.report.html).")
def report(study_name, storage, root, preset, out):
    from autotune.report import write_report
    from autotune.study import default_preset_path

    def action():
        study, _ = open_existing_study(study_name, storage, root)
        path = write_report(study, out or Path(root) / f"{study_name}.report.html",
                            preset or default_preset_path(root, study_name))
        console.print(f"report written to {path}")

    run_guarded(action)


@main.command(help="Serve optuna-dashboard on a study's storage (loopback by default); Ctrl-C stops it.")
@click.option("--study", "study_name", required=True, help="Study name.")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db).")
@click.option("--root", default="studies", show_default=True, help="Folder of the default storage.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8080, show_default=True)
def dashboard(study_name, storage, root, host, port):
    from autotune.dashboard import serve, study_page

    def action():
        _, url = open_existing_study(study_name, storage, root)
        console.print(f"optuna-dashboard for study {study_name!r} ({url}): {study_page(url, study_name, host, port)}")
        serve(url, host, port)

    run_guarded(action)


if __name__ == "__main__":
    main()
