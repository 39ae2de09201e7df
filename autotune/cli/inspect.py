"""Commands on an existing study: `show`, `report`, `dashboard`, `export` and `reconcile`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from autotune.cli.guard import guarded
from autotune.cli.options import option, options
from autotune.cli.output import console
from autotune.config.settings import default_preset_path
from autotune.present.tables import SHOW_VIEW, rich_table, trial_rows


def study_options(command):
    """--study (required), --storage, --root: where an existing study is."""
    return option("study_name", required=True, help="Study name.")(options("storage", "root")(command))


def open_existing_study(study_name: str, storage: str | None, root: str):
    from autotune.tuner.study import existing_study_url, load_study

    url = existing_study_url(storage, root, study_name)
    return load_study(study_name, url), url


@click.command(help="List a study's trials sorted by its objective (decode tok/s unless --objective e2e), with their "
                    "measurements, feasibility and failure kinds; the baseline and the seed recipe marked.")
@study_options
@option("as_json", help="Print the trials as a JSON list instead of a table.")
@click.option("--pareto", is_flag=True, help="Only the Pareto front: the feasible trials that no other feasible "
                                             "trial beats on both decode tok/s and time to first token.")
@guarded
def show(study_name, storage, root, as_json, pareto):
    from autotune.tuner.pareto import pareto_front
    from autotune.tuner.timeline import time_shares

    study, _ = open_existing_study(study_name, storage, root)
    rows = trial_rows(study)
    title = f"study {study_name}: trials by its objective (★ the exported one)"
    if pareto:
        front = {t.number for t in pareto_front(study.get_trials(deepcopy=False))}
        rows = [r for r in rows if r["number"] in front]
        title = f"study {study_name}: the Pareto front of decode tok/s and TTFT (★ the exported one)"
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    console.print(rich_table(rows, SHOW_VIEW, title))
    shares = time_shares(study.get_trials(deepcopy=False))
    if shares is not None:
        console.print(shares.line())


@click.command(help="Write one self-contained HTML report of a study: optimization history, decode tok/s "
                    "against peak memory with the budget, parameter importances, speed-up per knob value, "
                    "equivalence per trial and the exported preset.")
@study_options
@click.option("--preset", type=click.Path(dir_okay=False),
              help="Preset to summarize (default: <root>/<study>.preset.json when it exists).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="HTML file (default: <root>/<study>.report.html).")
@guarded
def report(study_name, storage, root, preset, out):
    from autotune.present.report import write_report

    study, _ = open_existing_study(study_name, storage, root)
    path = write_report(study, out or Path(root) / f"{study_name}.report.html",
                        preset or default_preset_path(root, study_name))
    console.print(f"report written to {path}")


@click.command(help="Serve optuna-dashboard on a study's storage (loopback by default); Ctrl-C stops it.")
@study_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8080, show_default=True)
@guarded
def dashboard(study_name, storage, root, host, port):
    from autotune.present.dashboard import serve, study_page

    _, url = open_existing_study(study_name, storage, root)
    console.print(f"optuna-dashboard for study {study_name!r} ({url}): {study_page(url, study_name, host, port)}")
    serve(url, host, port)


@click.command(help="Export a study's best feasible trial (or the feasible trial --trial names) as a preset JSON "
                    "file, and with --folder as a model folder that plain transformers runs as tuned.")
@study_options
@option("out")
@option("folder")
@click.option("--trial", type=int, help="Number of the feasible trial to export instead of the best "
                                        "('autotune show' lists them).")
@click.option("--pareto", "pareto_dir", type=click.Path(file_okay=False),
              help="Also write a preset for every trial of the Pareto front of decode tok/s and time to first token "
                   "into this folder, as trial-NNNNN.preset.json ('autotune show --pareto' lists them).")
@guarded
def export(study_name, storage, root, out, folder, trial, pareto_dir):
    from autotune.present.outcome import export_lines
    from autotune.tuner.export import export_study
    from autotune.tuner.storage_guard import check_export_target

    out = out or default_preset_path(root, study_name)
    folder = folder and os.path.join(folder, "")  # a folder target ends in a separator
    for target in (out, folder):
        if target:
            check_export_target(target)
    if pareto_dir:
        check_export_target(os.path.join(pareto_dir, "trial-00000.preset.json"))
    study, _ = open_existing_study(study_name, storage, root)
    for target in (out, folder):
        if target:
            for line in export_lines(export_study(study, target, Path(root) / study_name, trial=trial)):
                console.print(line)
    if pareto_dir:
        export_front(study, pareto_dir, Path(root) / study_name)


def export_front(study, folder: str, study_dir: Path) -> None:
    """A preset per trial of the study's Pareto front, into `folder`."""
    from autotune.tuner.export import export_study
    from autotune.tuner.pareto import pareto_front

    front = pareto_front(study.get_trials(deepcopy=False))
    for t in front:
        path = export_study(study, Path(folder) / f"trial-{t.number:05d}.preset.json", study_dir, trial=t.number)
        console.print(f"Pareto front: trial {t.number}, {t.user_attrs['decode_tokens_per_s']:.1f} decode tok/s, "
                      f"TTFT {1000 * t.user_attrs['ttft_s']:.1f} ms: {path}")
    console.print(f"{len(front)} preset(s) of the Pareto front written to {folder}")


@click.command(help="Import measurements whose result was saved but never told to Optuna (after a crash of the "
                    "orchestrator, a storage outage, or a trial failed from elsewhere).")
@study_options
@option("grace_period", help="A RUNNING trial's result is imported only once it is older than this many seconds "
                             "(its orchestrator is gone).")
@guarded
def reconcile(study_name, storage, root, grace_period):
    from autotune.present.progress import Progress
    from autotune.tuner.records import reconcile_study
    from autotune.tuner.study import existing_study_url

    url = existing_study_url(storage, root, study_name)
    imported = reconcile_study(study_name, url, root, grace_period, report=Progress(console))
    console.print(f"{len(imported)} measurement(s) imported" + (f": trials {imported}" if imported else ""))
