"""The one error guard of every command: an AutotuneError (a problem the user can fix) becomes one line on
stderr and the error's own exit code, never a traceback; Ctrl-C not caught nearer exits 130."""

from __future__ import annotations

import contextlib
import functools

import click

from autotune.cli.output import err_console
from autotune.errors import AutotuneError


class CliError(click.ClickException):
    """An AutotuneError at the edge: one line on stderr and the error's own exit code."""

    def __init__(self, error: AutotuneError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


def guarded(command):
    """Run the command body under the guard."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AutotuneError as exc:
            raise CliError(exc) from None
        except KeyboardInterrupt:  # one not caught nearer (while inspecting the machine, confirming, ...)
            err_console.print("interrupted")
            raise SystemExit(130) from None
    return run


@contextlib.contextmanager
def on_interrupt(message: str, out=err_console):
    """Ctrl-C during a run the command resumes later: say what happened to the running work and how to go on,
    and exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        out.print(message)
        raise SystemExit(130) from None
