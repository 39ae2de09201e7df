"""The Python API: `autotune.search` and `autotune.verify`, the very functions the `autotune search` and
`autotune verify` commands call, so that a notebook or a pipeline needs no subprocess.

Their keyword parameters are the commands' options, by the names and with the defaults declared once in
autotune.config.settings.OPTIONS (`inspect.signature(autotune.search)` lists them). Errors are the library's
(autotune.errors), never SystemExit; a preset that fails verification is a Verification whose `passed` is
False, not an error.
"""

from __future__ import annotations

import inspect
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from autotune.config import models
from autotune.config.settings import OPTIONS, SEARCH_OPTIONS, VERIFY_OPTIONS, SearchSettings, default_preset_path


@dataclass(frozen=True)
class SearchResult:
    """What a search found: the study, its best feasible trial and its figures, and the preset written.

    `objective_value` is the best trial's figure of the study's objective (`objective`, a Measurement field:
    decode_tokens_per_s unless --objective e2e); `confirmed_median` is the median of that figure over the best
    trial's confirmations (None without them);
    `outcome` the line the command ends with."""

    study_name: str
    storage_url: str
    preset_path: str
    best_trial: int
    role: str
    decode_tokens_per_s: float | None
    e2e_tokens_per_s: float | None
    ttft_s: float | None
    objective: str
    objective_value: float
    top1_agreement: float | None
    confirmed_median: float | None
    outcome: str


def declared(names: tuple[str, ...], leading: tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    """A signature of keyword parameters `names` with their declared defaults (a required option has none)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter(name, keyword, **({} if OPTIONS[name].required else
                                                      {"default": OPTIONS[name].default})) for name in names]
    return inspect.Signature([*leading, *parameters])


def injected_faults() -> tuple:
    """Test-only fault injection: AUTOTUNE_TEST_FAULTS="2:oom,pad_to_multiple_of=8:kill" (autotune.worker.faults)."""
    from autotune.worker.faults import parse_spec

    return tuple(parse_spec(os.environ.get("AUTOTUNE_TEST_FAULTS", "")))


def settings_from_options(options: dict, storage: str | None = None, command: str | None = None) -> SearchSettings:
    """SearchSettings from the options of `search` (and `study create`, which takes the same ones)."""
    from autotune.memory import is_fraction
    from autotune.tuner.estimates import budget_bytes
    from autotune.tuner.machine import probe

    vram = None if options["vram"] is None else str(options["vram"])
    env = probe(options["device"]) if vram is not None and is_fraction(vram) else {}
    return SearchSettings.from_options(
        options, study_name=options["study_name"] or models.default_study_name(options["model"]),
        storage=storage or options["storage"], command=command, faults=injected_faults(), vram=budget_bytes(vram, env))


def result_of(study, storage_url: str, path: Path) -> SearchResult:
    """The SearchResult of a study whose preset is written at `path`."""
    from autotune.present.outcome import outcome_line
    from autotune.config.objective import metric_of
    from autotune.tuner.export import STABILITY_ATTR
    from autotune.tuner.study import recorded
    from autotune.tuner.trials import best_feasible_trial, role

    best = best_feasible_trial(study.get_trials(deepcopy=False))
    stability = study.user_attrs.get(STABILITY_ATTR) or {}
    return SearchResult(study_name=study.study_name, storage_url=storage_url, preset_path=str(path),
                        best_trial=best.number, role=role(best),
                        decode_tokens_per_s=best.user_attrs.get("decode_tokens_per_s"),
                        e2e_tokens_per_s=best.user_attrs.get("e2e_tokens_per_s"), ttft_s=best.user_attrs.get("ttft_s"),
                        objective=metric_of(recorded(study)), objective_value=best.value,
                        top1_agreement=best.user_attrs.get("top1_agreement"),
                        confirmed_median=stability.get("median") if stability.get("trial") == best.number else None,
                        outcome=outcome_line(study))


def run_search(options: dict, out: Console, report, command: str, on_interrupt=None) -> SearchResult:
    """`search`: the study run here (or by one worker per device of `gpus`), confirmed and exported.

    Args:
        options: every option of `autotune search` by name.
        out: where the messages and the trial table go.
        report: the progress events' receiver (autotune.present.progress).
        command: the command line recorded in the study.
        on_interrupt: `on_interrupt(message, out)`, a context manager for a Ctrl-C while trials run (the
            CLI's exits 130); by default the message is printed and the KeyboardInterrupt goes on.

    Returns:
        The SearchResult.
    """
    from autotune import interrupt
    from autotune.present.outcome import export_lines
    from autotune.tuner.storage_guard import check_export_target, storage_faults

    storage, gpus = None, ()
    if options["gpus"]:
        from autotune.tuner.local_workers import parse_gpus, shared_storage_url

        gpus = parse_gpus(options["gpus"])
        name = options["study_name"] or models.default_study_name(options["model"])
        storage = shared_storage_url(options["storage"], options["root"], name, len(gpus))
    settings = settings_from_options(options, storage=storage, command=command)
    check_export_target(options["out"] or default_preset_path(settings.root, settings.study_name))
    # Ctrl-C and SIGTERM unwind where the tuner waits: the worker is killed, its trial marked interrupted
    with interrupt.taking_signals(), storage_faults(settings.storage_url, settings.study_dir):
        stopping = on_interrupt or interrupted
        runner = run_on_gpus(settings, gpus, out, report, stopping) if options["gpus"] else \
            run_here(settings, out, report, stopping)
        path = runner.confirm_and_export(options["out"])
    result = result_of(runner.study, settings.storage_url, path)
    for line in export_lines(path):
        out.print(line)
    out.print(result.outcome)
    report("preset", path=str(path), best=result.objective_value, outcome=result.outcome)
    return result


def interrupted(message: str, out: Console):
    """Ctrl-C during a run that a rerun resumes: say so, then let the interrupt go on."""
    from contextlib import contextmanager

    @contextmanager
    def saying():
        try:
            yield
        except KeyboardInterrupt:
            out.print(message)
            raise
    return saying()


def run_here(settings: SearchSettings, out: Console, report, stopping):
    """The study on this machine's one device, in this process; returns its Tuner."""
    from autotune.present.tables import trials_table
    from autotune.tuner.loop import Tuner

    tuner = Tuner(settings, report=report)
    tuner.prepare()
    out.print(f"study {settings.study_name!r} in {settings.storage_url}: {tuner.finished_count()} of "
              f"{settings.trials} trials done")
    try:
        with stopping("interrupted: the running trial was stopped and marked failed; rerun the same command "
                         "to resume", out):
            tuner.run()
    finally:
        if tuner.study is not None:
            out.print(trials_table(tuner.study))
    return tuner


def run_on_gpus(settings: SearchSettings, gpus: tuple[str, ...], out: Console, report, stopping):
    """The study made, one worker per device on it until its budget is spent; returns its creator, which
    confirms on the first device."""
    from autotune.present.tables import trials_table
    from autotune.tuner.local_workers import run_local_workers

    creator = create_and_describe(settings, report, out)
    try:
        with stopping("interrupted: the workers stopped and marked their trials failed; rerun the same command "
                         "to resume", out):
            run_local_workers(settings, gpus, report)
    finally:
        out.print(trials_table(creator.study))
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]  # the confirmation runs on the first device
    return creator


def create_and_describe(settings: SearchSettings, report, out: Console):
    """Make the study (or find it made with the same settings) and say which; returns its creator."""
    from autotune.tuner.shared import create_study

    creator = create_study(settings, report=report)
    how = "created" if creator.created else "exists already, with the same settings"
    out.print(f"study {settings.study_name!r} in {settings.storage_url} {how}: "
              f"{len(creator.study.trials)} trial(s), a total budget of {settings.trials}")
    return creator


def search(**options) -> SearchResult:
    """Run (or resume) a study over inference configurations of `model` and export the best one, as
    `autotune search` does, printing its progress and table to stdout (`quiet=True`: the table only).

    Args:
        **options: the options of `autotune search` by name (model, vram, trials, device, space, study_name,
            prompts, batch_size, max_new_tokens, min_agreement, gate, out, root, confirm, gpus, ...), with the
            defaults declared in autotune.config.settings.OPTIONS; `model` is required.

    Returns:
        A SearchResult: the study's name and storage, its best trial and figures, the preset's path. Raises
        the library's errors (autotune.errors): InputError for bad options, NoFeasibleTrialError,
        SystemicFailureError, StudyMismatchError, ...
    """
    from autotune.present.progress import JsonProgress, Progress

    bound = search.__signature__.bind(**options)
    bound.apply_defaults()
    given = dict(bound.arguments)
    out = Console(highlight=False, soft_wrap=True, stderr=given["json_progress"])
    report = JsonProgress() if given["json_progress"] else Progress(out, given["quiet"])
    command = shlex.join(["autotune.search", *(f"{k}={v!r}" for k, v in options.items())])
    return run_search(given, out, report, command)


def verify(path, **options):
    """Measure a preset again on this machine, in fresh processes, against what it recorded, as
    `autotune verify` does (progress lines on stdout).

    Args:
        path: a preset file, or a model folder holding one as `autotune_preset.json`.
        **options: the options of `autotune verify` by name (device, runs, threshold, prompts, repeats, warmup,
            trial_timeout), with their declared defaults; `as_json` is the command's own and ignored.

    Returns:
        An autotune.tuner.verify.Verification: `passed`, the `checks` (speed, equivalence) with their figures,
        each run's figures. Raises PresetError for a preset of the wrong shape, before any process starts.
    """
    from autotune.tuner.verify import verify_preset

    bound = verify.__signature__.bind(path, **options)
    bound.apply_defaults()
    given = {k: v for k, v in bound.arguments.items() if k not in ("path", "as_json")}
    out = Console(highlight=False, soft_wrap=True)
    return verify_preset(path, say=out.print, **given)


search.__signature__ = declared(SEARCH_OPTIONS)
verify.__signature__ = declared(VERIFY_OPTIONS, (inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD),))
