"""Where the commands write: a console for people (stdout), and one on stderr for when stdout carries JSON."""

from __future__ import annotations

import sys

from rich.console import Console

# Wide enough for the trial table when the output is a file or a pipe (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(highlight=False, soft_wrap=True, stderr=True, width=None if sys.stderr.isatty() else 160)


def export_lines(path) -> list[str]:
    """What an export says: where the preset went, and for a model folder how to run it."""
    from pathlib import Path

    from autotune.runtime.hints import PRESET_IN_FOLDER

    path = Path(path)
    if path.name != PRESET_IN_FOLDER:
        return [f"preset written to {path}"]
    return [f"model folder written to {path.parent}/ (its preset: {path})",
            f"run it without autotune: AutoModelForCausalLM.from_pretrained({str(path.parent)!r}, "
            "trust_remote_code=True).generate(...)"]


def print_export(path, out: Console = console) -> None:
    """Print `export_lines(path)` on `out`."""
    for line in export_lines(path):
        out.print(line)
