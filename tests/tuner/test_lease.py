"""The measurement lease: one holder at a time, every other worker paused while it holds it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from autotune.tuner.lease import Lease
from autotune.worker.lease import is_stopped, process_state

SPIN = [sys.executable, "-c", "while True: pass"]


@pytest.fixture
def workers():
    procs = [subprocess.Popen(SPIN, start_new_session=True) for _ in range(3)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def running(pid: int) -> bool:
    return process_state(pid) in ("R", "S", "D")


def soon(condition, timeout: float = 5.0) -> bool:
    """Signals are delivered asynchronously: whether `condition()` holds within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_holder_runs_alone_and_the_others_go_on_after(workers):
    a, b, c = (p.pid for p in workers)
    lease = Lease(settle_s=0.0)
    for pid in (a, b):
        lease.register(pid)
    lease.acquire(a)
    assert is_stopped(b) and running(a)
    lease.register(c)  # a worker started while another measures is paused at once
    assert soon(lambda: is_stopped(c))
    lease.release(a)
    assert soon(lambda: running(b) and running(c))
    acquired = [e for e in lease.events if e.what == "acquired"]
    assert len(acquired) == 1 and acquired[0].others_stopped
    assert lease.held_back(b) > 0 and lease.held_back(a) >= 0


def test_a_second_holder_waits_for_the_first(workers):
    a, b = workers[0].pid, workers[1].pid
    lease = Lease(settle_s=0.0)
    lease.register(a)
    lease.register(b)
    lease.acquire(a)
    second = threading.Thread(target=lease.acquire, args=(b,))
    second.start()
    time.sleep(0.3)
    assert second.is_alive() and lease.holder == a  # b waits
    lease.unregister(a)  # a worker that ends holding the lease gives it back
    second.join(timeout=5)
    assert lease.holder == b and soon(lambda: running(a))
    assert lease.held_back(b) >= 0.3  # its wait does not count against its timeout
    lease.release(b)
    order = [(e.pid, e.what) for e in lease.events if e.what in ("acquired", "released")]
    assert order == [(a, "acquired"), (a, "released"), (b, "acquired"), (b, "released")]


def test_signal_all_ends_paused_workers(workers):
    a, b = workers[0].pid, workers[1].pid
    lease = Lease(settle_s=0.0)
    lease.register(a)
    lease.register(b)
    lease.acquire(a)
    lease.signal_all(15)
    assert workers[1].wait(timeout=5) == -15 and workers[0].wait(timeout=5) == -15
