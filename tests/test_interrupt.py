"""autotune.interrupt: Ctrl-C and SIGTERM are noted, and raised only where the tuner waits."""

from __future__ import annotations

import os
import signal
import time

import pytest

from autotune import interrupt


@pytest.fixture
def installed():
    with interrupt.taking_signals():
        yield
    interrupt._state.update(pending=None, depth=0, noted=None)


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


def test_the_handlers_that_were_there_are_put_back():
    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with interrupt.taking_signals():
            assert signal.getsignal(signal.SIGTERM) is not mine
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGTERM) is mine
        interrupt.check()  # the noted signal went with the region: nothing is raised later
        assert interrupt.last_noted() == signal.SIGTERM and interrupt.last_noted() is None
    finally:
        signal.signal(signal.SIGTERM, before)
