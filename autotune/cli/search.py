"""`autotune search`, `autotune study create` and `autotune worker`: running a study, alone or shared."""

from __future__ import annotations

import os
import shlex
import sys

import click

from autotune import interrupt
from autotune.cli.guard import guarded, on_interrupt
from autotune.cli.options import option, options
from autotune.cli.output import console, err_console
from autotune.config.settings import SEARCH_OPTIONS
from autotune.errors import InputError
from autotune.present.progress import JsonProgress, Progress

# `study create` takes the options of `search` but where the preset goes and how the workers run
CREATE_OPTIONS = tuple(name for name in SEARCH_OPTIONS if name not in ("out", "gpus", "json_progress"))


@click.command(help="Run (or resume) a study over inference configurations of MODEL and export the best one.\n\n"
                    "Each trial builds, warms, measures and compares one configuration in a fresh process. "
                    "Rerunning the same command resumes the study up to --trials in total.")
@options(*SEARCH_OPTIONS)
@guarded
def search(**options):
    from autotune.api import run_search

    out = err_console if options["json_progress"] and not options["gpus"] else console
    report = JsonProgress() if options["json_progress"] and not options["gpus"] else Progress(out, options["quiet"])
    run_search(options, out, report, shlex.join(["autotune", *sys.argv[1:]]), on_interrupt=on_interrupt)


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
    from autotune.api import create_and_describe, settings_from_options

    create_and_describe(settings_from_options(options, command=shlex.join(["autotune", *sys.argv[1:]])),
                        Progress(console, options["quiet"]), console)
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
    from autotune.tuner.storage_guard import storage_faults
    from autotune.tuner.trials import budget_used

    if is_sqlite(storage):
        console.print("note: a SQLite storage takes one worker only; use PostgreSQL for several", style="dim")
    from autotune.api import injected_faults

    w = join_study(study_name, storage, root=root, gpu=gpu, report=Progress(console, quiet), faults=injected_faults())
    done = budget_used(w.study.get_trials(deepcopy=False))
    identity = w.coordination.identity
    console.print(f"worker {identity['host']}:{identity['pid']} joined study {study_name!r}: "
                  f"{done} of {w.settings.trials} trials started")
    with on_interrupt("interrupted: the running trial was stopped and marked failed", console), \
            storage_faults(storage, w.settings.study_dir):
        w.run()
    console.print(f"the study's budget of {w.settings.trials} trials is reached")
