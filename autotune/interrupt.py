"""Ctrl-C and SIGTERM, taken where the tuner can stop cleanly.

By default Python raises KeyboardInterrupt (and a SIGTERM handler its SystemExit) in the main thread
wherever it happens to be. Inside a storage call (SQLAlchemy on SQLite) that leaves a transaction open
with its lock held; the tuner then marks the running trial interrupted through another connection,
which waits for that lock, while the heartbeat thread waits too, and the process hangs instead of
exiting (R11 of ../shared/RELIABILITY.md: seen in CI, then reproduced on a loaded CPU, where the main
thread spends more of its time in storage calls).

So the handlers installed here only note the signal. It is raised where the tuner waits and holds no
storage state: inside `interruptible()` (waiting for a worker process, sleeping between polls), at
once; elsewhere at the next `check()` or `interruptible()`. SIGINT raises KeyboardInterrupt, SIGTERM
SystemExit(143), as before. Without `install()` (autotune used as a library) nothing changes.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_state = {"pending": None, "depth": 0}


def install() -> None:
    """Take SIGINT and SIGTERM through this module (from the main thread; elsewhere, nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _note)


def _note(signum, frame) -> None:
    _state["pending"] = signum
    if _state["depth"]:
        check()


def check() -> None:
    """Raise the signal noted since the last one was raised (KeyboardInterrupt or SystemExit)."""
    signum, _state["pending"] = _state["pending"], None
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def interruptible():
    """A region where a signal is raised at once: waits and sleeps only, no storage calls."""
    check()
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
