"""docs/cli.md: every command's --help, generated (`python -m autotune.cli.reference > docs/cli.md`);
tests/cli/test_reference.py fails when the file and the commands disagree."""

from __future__ import annotations

import click

WIDTH = 100
HEADER = """# Command reference

Generated from the commands' own `--help` by `python -m autotune.cli.reference > docs/cli.md`; a test keeps it
current. Exit codes: 0 done, 2 bad input, 3 nothing feasible to export, 4 systemic failure, 5 study mismatch,
6 storage unavailable or failed, 7 a preset that failed `autotune verify`, 130 / 143 interrupted.
"""


def commands(group: click.Group, prefix: str = "autotune") -> list[tuple[str, click.Command]]:
    """(full name, command) of every command under `group`, depth first, in name order."""
    found = []
    for name in sorted(group.commands):
        command = group.commands[name]
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def help_text(name: str, command: click.Command) -> str:
    context = click.Context(command, info_name=name, terminal_width=WIDTH, max_content_width=WIDTH)
    return command.get_help(context)


def reference() -> str:
    """The whole reference, in Markdown."""
    from autotune.cli import main

    parts = [HEADER]
    for name, command in commands(main):
        parts.append(f"## `{name}`\n\n```\n{help_text(name, command)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
