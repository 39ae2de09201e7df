"""`autotune verify`: a preset measured again on this machine and judged against what it recorded."""

from __future__ import annotations

import json

import click

from autotune import interrupt
from autotune.cli.guard import guarded
from autotune.cli.options import option, options
from autotune.cli.output import console, err_console
from autotune.config.settings import VERIFY_OPTIONS
from autotune.errors import VerificationFailedError

PROMPTS_HELP = ("The prompt file the preset was measured with (JSONL), for a preset that keeps its prompts by their "
                "hash only; checked against that hash.")


@click.command(help="Measure a preset again on this machine, in fresh processes: the baseline rebuilt, then the "
                    "preset's configuration --runs times on the workload it records. Judges the median decode tok/s "
                    "(and its spread) against the recorded figure, and the top-1 agreement with the baseline "
                    "against the preset's bar; exits 7 when a check fails.\n\n"
                    "PRESET is a preset file, or a model folder holding autotune_preset.json. Run it after "
                    "upgrading torch or transformers, or on a new GPU.")
@click.argument("preset", type=click.Path())
@options(*(name for name in VERIFY_OPTIONS if name not in ("prompts", "as_json")))
@option("prompts", help=PROMPTS_HELP)
@option("as_json", help="Print the verdicts as one JSON object on stdout (the progress lines go to stderr).")
@guarded
def verify(preset, as_json, **settings):
    from autotune.tuner.verify import verify_preset

    out = err_console if as_json else console
    with interrupt.taking_signals():
        verification = verify_preset(preset, say=out.print, **settings)
    if as_json:
        click.echo(json.dumps(verification.to_dict(), indent=1))
    else:
        if verification.device_name != verification.recorded_device_name:
            console.print(f"note: measured on {verification.device_name}; the preset was on "
                          f"{verification.recorded_device_name}", style="dim")
        for check in verification.checks:
            console.print(check.line(), markup=False)
    if not verification.passed:
        raise VerificationFailedError(f"the preset failed verification: {verification.failure()}")
