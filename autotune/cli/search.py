"""`autotune search`, `autotune study create` and `autotune worker`: running a study, alone or shared."""

from __future__ import annotations

import os
import shlex
import sys

import click

from autotune import interrupt
from autotune.cli.guard import guarded, on_interrupt
from autotune.cli.options import option, options
from autotune.cli.output import console, err_console, print_export
from autotune.config import models
from autotune.config.settings import SEARCH_OPTIONS, SearchSettings, default_preset_path
from autotune.errors import InputError
from autotune.present.outcome import outcome_line
from autotune.present.progress import JsonProgress, Progress
from autotune.present.tables import SEARCH_VIEW, rich_table, trial_rows
from autotune.tuner.storage_guard import check_export_target, storage_faults

# `study create` takes the options of `search` but where the preset goes and how the workers run
CREATE_OPTIONS = tuple(name for name in SEARCH_OPTIONS if name not in ("out", "gpus", "json_progress"))


def trials_table(study):
    """The table a search ends with: every trial, in trial order."""
    return rich_table(trial_rows(study, by_speed=False), SEARCH_VIEW, f"study {study.study_name}")


def injected_faults() -> tuple:
    """Test-only fault injection: AUTOTUNE_TEST_FAULTS="2:oom,pad_to_multiple_of=8:kill" (autotune.worker.faults)."""
    from autotune.worker.faults import parse_spec

    return tuple(parse_spec(os.environ.get("AUTOTUNE_TEST_FAULTS", "")))


def settings_from_options(options: dict, storage: str | None = None) -> SearchSettings:
    """SearchSettings from the options of `search` (and `study create`, which takes the same ones)."""
    from autotune.tuner.estimates import budget_bytes
    from autotune.tuner.machine import probe
    from autotune.memory import is_fraction

    vram = options["vram"]
    env = probe(options["device"]) if vram is not None and is_fraction(vram) else {}
    return SearchSettings.from_options(
        options, study_name=options["study_name"] or models.default_study_name(options["model"]),
        storage=storage or options["storage"], command=shlex.join(["autotune", *sys.argv[1:]]),
        faults=injected_faults(), vram=budget_bytes(vram, env))


@click.command(help="Run (or resume) a study over inference configurations of MODEL and export the best one.\n\n"
                    "Each trial builds, warms, measures and compares one configuration in a fresh process. "
                    "Rerunning the same command resumes the study up to --trials in total.")
@options(*SEARCH_OPTIONS)
@guarded
def search(**options):
    # Ctrl-C and SIGTERM unwind where the tuner waits: the worker is killed, its trial marked interrupted
    with interrupt.taking_signals():
        if options["gpus"]:
            return search_on_gpus(options)
        return search_here(options)


def search_here(options: dict) -> None:
    """`search` on this machine's one device, in this process."""
    from autotune.tuner.loop import Tuner

    settings = settings_from_options(options)
    check_export_target(options["out"] or default_preset_path(settings.root, settings.study_name))
    out = err_console if options["json_progress"] else console
    report = JsonProgress() if options["json_progress"] else Progress(console, options["quiet"])
    tuner = Tuner(settings, report=report)
    with storage_faults(settings.storage_url, settings.study_dir):
        tuner.prepare()
        out.print(f"study {settings.study_name!r} in {settings.storage_url}: {tuner.finished_count()} of "
                  f"{settings.trials} trials done")
        try:
            with on_interrupt("interrupted: the running trial was stopped and marked failed; rerun the same "
                              "command to resume", out):
                tuner.run()
        finally:
            if tuner.study is not None:
                out.print(trials_table(tuner.study))
        path = tuner.confirm_and_export(options["out"])
    print_export(path, out)
    found = outcome_line(tuner.study)
    out.print(found)
    if options["json_progress"]:
        report("preset", path=str(path), best=tuner.best_value(), outcome=found)


def create_and_describe(settings: SearchSettings, report):
    from autotune.tuner.shared import create_study

    creator = create_study(settings, report=report)
    how = "created" if creator.created else "exists already, with the same settings"
    console.print(f"study {settings.study_name!r} in {settings.storage_url} {how}: "
                  f"{len(creator.study.trials)} trial(s), a total budget of {settings.trials}")
    return creator


def search_on_gpus(options: dict) -> None:
    """`search --gpus`: make the study, run one worker per device on it, then confirm and export the best."""
    from autotune.tuner.local_workers import parse_gpus, run_local_workers, shared_storage_url

    gpus = parse_gpus(options["gpus"])
    name = options["study_name"] or models.default_study_name(options["model"])
    url = shared_storage_url(options["storage"], options["root"], name, len(gpus))
    report = Progress(console, options["quiet"])
    settings = settings_from_options(options, storage=url)
    check_export_target(options["out"] or default_preset_path(settings.root, settings.study_name))
    with storage_faults(url, settings.study_dir):
        creator = create_and_describe(settings, report)
        try:
            with on_interrupt("interrupted: the workers stopped and marked their trials failed; rerun the same "
                              "command to resume", console):
                run_local_workers(settings, gpus, report)
        finally:
            console.print(trials_table(creator.study))
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]  # the confirmation runs on the first device
        path = creator.confirm_and_export(options["out"])
    print_export(path)
    console.print(outcome_line(creator.study))


@click.group(help="Make a study once, for workers that share it (autotune worker).")
def study():
    pass


@study.command(help="Create a study with its search space, workload, budget (--trials, over all workers) and "
                    "baseline recorded in it, so that workers need only its name and storage.\n\n"
                    "Takes the options of 'autotune search'. Running it again with the same options changes "
                    "nothing; another --trials changes the study's total budget.")
@options(*CREATE_OPTIONS)
@guarded
def create(**options):
    create_and_describe(settings_from_options(options), Progress(console, options["quiet"]))
    console.print("start workers with: autotune worker --study NAME --storage URL [--gpu N]")


@click.command(help="Join a study made by 'autotune study create' and run its trials until the study's total "
                    "budget is reached over all workers. Start one per GPU, on one host or many, with the same "
                    "--study and --storage (PostgreSQL for several hosts).")
@option("study_name", required=True, help="Study name.")
@option("storage", required=True, help="Storage URL of the study (postgresql://user:password@host/db), or a journal "
                                       "file path shared by workers of one host.")
@click.option("--gpu", help="Device index this worker's trials use (sets CUDA_VISIBLE_DEVICES for them).")
@options("root", "quiet")
@guarded
def worker(study_name, storage, gpu, root, quiet):
    if gpu is not None:
        if not gpu.isdigit():
            raise InputError(f"--gpu takes one device index (0, 1, ...), got {gpu!r}")
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything starts a process that sees devices
    with interrupt.taking_signals():
        run_worker(study_name, storage, gpu, root, quiet)


def run_worker(study_name: str, storage: str, gpu: str | None, root: str, quiet: bool) -> None:
    """`worker`: join the study and run its trials to the budget."""
    from autotune.tuner.shared import join_study
    from autotune.tuner.storage import is_sqlite
    from autotune.tuner.trials import budget_used

    if is_sqlite(storage):
        console.print("note: a SQLite storage takes one worker only; use PostgreSQL for several", style="dim")
    w = join_study(study_name, storage, root=root, gpu=gpu, report=Progress(console, quiet), faults=injected_faults())
    done = budget_used(w.study.get_trials(deepcopy=False))
    identity = w.coordination.identity
    console.print(f"worker {identity['host']}:{identity['pid']} joined study {study_name!r}: "
                  f"{done} of {w.settings.trials} trials started")
    with on_interrupt("interrupted: the running trial was stopped and marked failed", console), \
            storage_faults(storage, w.settings.study_dir):
        w.run()
    console.print(f"the study's budget of {w.settings.trials} trials is reached")
