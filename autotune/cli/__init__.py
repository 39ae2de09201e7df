"""The `autotune` command: a thin click layer over the tuner, the presentation and the runtime.

Every option is made from its one declaration (autotune.config.settings, through `options`), and every command
runs under one error guard (`guard.guarded`): a problem the user can fix is one line on stderr and its own exit
code (2 bad input, 3 nothing feasible to export, 4 systemic failure, 5 study mismatch, 6 storage unavailable or failed,
7 a preset that failed `autotune verify`, 130 / 143 interrupted).
"""

from __future__ import annotations

import click

from autotune import DISTRIBUTION
from autotune.cli import estimate, inspect, search, verify


@click.group(help="autotune: tune Hugging Face transformers inference by measurement.")
@click.version_option(package_name=DISTRIBUTION)
def main():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


for command in (search.search, search.study, search.worker, estimate.estimate, inspect.export, inspect.reconcile,
                inspect.show, inspect.report, inspect.dashboard, verify.verify):
    main.add_command(command)

__all__ = ["main"]
