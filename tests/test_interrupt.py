"""autotune.interrupt: Ctrl-C and SIGTERM are noted, and raised only where the tuner waits."""

from __future__ import annotations

import os
import signal
import time

import pytest

from autotune import interrupt


@pytest.fixture
def installed():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupt.install()
    yield
    interrupt._state.update(pending=None, depth=0)
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_a_signal_outside_a_wait_is_raised_at_the_next_check(installed):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # delivered by now: noted, not raised (this could be the middle of a storage call)
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()
    interrupt.check()  # raised once


def test_a_signal_during_a_wait_is_raised_at_once(installed):
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        with interrupt.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert stop.value.code == 143 and time.monotonic() - started < 2


def test_a_signal_noted_before_a_wait_is_raised_when_it_begins(installed):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt):
        with interrupt.interruptible():
            pytest.fail("the wait should not begin")
