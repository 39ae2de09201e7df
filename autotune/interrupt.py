"""Ctrl-C and SIGTERM, taken where the tuner can stop cleanly; and the one way the tuner waits (`Poll`).

By default Python raises KeyboardInterrupt (and a SIGTERM handler its SystemExit) in the main thread
wherever it happens to be. Inside a storage call (SQLAlchemy on SQLite) that leaves a transaction open
with its lock held; the tuner then marks the running trial interrupted through another connection,
which waits for that lock, while the heartbeat thread waits too, and the process hangs instead of
exiting (R11 of ../shared/RELIABILITY.md).

So the handlers installed here only note the signal. It is raised where the tuner waits and holds no
storage state: inside `interruptible()` (waiting for a worker process, sleeping between polls), at
once; elsewhere at the next `check()` or `interruptible()`. SIGINT raises KeyboardInterrupt, SIGTERM
SystemExit(143). Only inside `taking_signals()` (a command's run); outside it, and for autotune used as a
library, the process's own handlers stay, and they are put back when the region ends, so that a caller
(a test runner calling a command in its own process) can still be stopped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"pending": None, "depth": 0, "noted": None}


@contextlib.contextmanager
def taking_signals():
    """Take SIGINT and SIGTERM through this module for the region (from the main thread; elsewhere, nothing),
    then put back the handlers that were there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _note)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        _state["pending"] = None


def last_noted() -> int | None:
    """The last signal taken through this module and not yet asked for (then forgotten): a caller that ran a
    command in its own process learns that it was asked to stop."""
    signum, _state["noted"] = _state["noted"], None
    return signum


def _note(signum, frame) -> None:
    _state["pending"] = _state["noted"] = signum
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


def pause(seconds: float) -> None:
    """Sleep where a signal is taken at once."""
    with interruptible():
        time.sleep(seconds)


class Poll:
    """The one way the tuner waits for something with a deadline: look, and between looks sleep
    `interval_s` where a signal is taken at once. `on_wait` is told once, before the first sleep (to say
    what is awaited); `restart` gives the deadline its whole length again.

        poll = Poll(timeout_s, 1.0, on_wait=lambda: report("waiting", ...))
        while not ready():
            if poll.expired():
                break
            poll.wait()
    """

    def __init__(self, timeout_s: float, interval_s: float, on_wait: Callable[[], None] | None = None):
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.on_wait = on_wait
        self.told = False
        self.restart()

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def wait(self) -> None:
        if not self.told:
            self.told = True
            if self.on_wait is not None:
                self.on_wait()
        pause(self.interval_s)
