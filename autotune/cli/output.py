"""Where the commands write: a console for people (stdout), and one on stderr for when stdout carries JSON."""

from __future__ import annotations

import sys

from rich.console import Console

# Wide enough for the trial table when the output is a file or a pipe (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(highlight=False, soft_wrap=True, stderr=True, width=None if sys.stderr.isatty() else 160)

