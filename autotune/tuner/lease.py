"""The measurement lease: the orchestrator hands the device to one worker at a time for its timed passes.

Pipelined trials (autotune.tuner.pipeline) start, load, warm up and compile side by side. When one of them
reaches its timed passes it asks for the lease (autotune.worker.lease); the orchestrator grants it to one
worker at a time and pauses every other worker of the study (SIGSTOP to its process group, its compile
workers included) until the holder gives it back, so that no other process's work is on the device, or on
the host's cores, while it measures. A paused process holds its memory and CUDA context but runs nothing;
the holder's contention watch sees every other process on the GPU stopped (autotune.worker.contention).

A worker is paused the moment it registers if the lease is held (it would otherwise start CUDA beside the
measurement). Its timeout does not run while it waits for the lease or is paused: `held_back(pid)` is what
the launcher adds to its deadline. A worker that dies holding the lease gives it back (its pipe closes).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

from autotune.worker.lease import process_state

# After pausing the others, the holder waits this long before it is granted: work a paused process queued
# on the device before it stopped (a decoding step, a kernel being benchmarked) drains in milliseconds.
SETTLE_S = 0.2
STOP_CONFIRM_S = 2.0


@dataclass
class Event:
    pid: int
    what: str  # "started", "acquired", "released" or "ended"
    at: float  # time.time()
    others_stopped: bool | None = None  # on "acquired": whether every other worker was seen stopped


class Lease:
    """One holder at a time among the registered worker processes (each the leader of its process group)."""

    def __init__(self, settle_s: float = SETTLE_S):
        self.settle_s = settle_s
        self.cond = threading.Condition()
        self.holder: int | None = None
        self.workers: set[int] = set()
        self.paused_since: dict[int, float] = {}
        self.held_back_s: dict[int, float] = {}
        self.events: list[Event] = []  # every grant and release, in order: the pipeline's tests read them

    def register(self, pid: int) -> None:
        """A worker started (its pid leads its process group); paused at once while another measures."""
        with self.cond:
            self.events.append(Event(pid, "started", time.time()))
            self.workers.add(pid)
            self.held_back_s.setdefault(pid, 0.0)
            if self.holder is not None:
                self.pause(pid)

    def unregister(self, pid: int) -> None:
        """A worker ended: the lease is given back if it held it."""
        with self.cond:
            if self.holder == pid:
                self.release_locked(pid)
            self.paused_since.pop(pid, None)
            self.workers.discard(pid)
            self.events.append(Event(pid, "ended", time.time()))

    def acquire(self, pid: int) -> None:
        """Block until `pid` holds the lease, every other worker paused and settled."""
        with self.cond:
            asked = time.monotonic()
            while self.holder is not None:
                self.cond.wait()
            self.holder = pid
            self.held_back_s[pid] = self.held_back_s.get(pid, 0.0) + time.monotonic() - asked
            others = [other for other in self.workers if other != pid]
            for other in others:
                self.pause(other)
        stopped = wait_stopped(others, STOP_CONFIRM_S)
        time.sleep(self.settle_s)
        with self.cond:
            self.events.append(Event(pid, "acquired", time.time(), stopped))

    def release(self, pid: int) -> None:
        with self.cond:
            if self.holder == pid:
                self.release_locked(pid)

    def release_locked(self, pid: int) -> None:
        self.events.append(Event(pid, "released", time.time()))
        self.holder = None
        for other in list(self.paused_since):
            self.resume(other)
        self.cond.notify_all()

    def held_back(self, pid: int) -> float:
        """Seconds worker `pid` has waited for the lease or been paused (its timeout is extended by them)."""
        with self.cond:
            paused = time.monotonic() - self.paused_since[pid] if pid in self.paused_since else 0.0
            return self.held_back_s.get(pid, 0.0) + paused

    def pause(self, pid: int) -> None:
        if pid in self.paused_since:
            return
        signal_group(pid, signal.SIGSTOP)
        self.paused_since[pid] = time.monotonic()

    def resume(self, pid: int) -> None:
        since = self.paused_since.pop(pid)
        self.held_back_s[pid] = self.held_back_s.get(pid, 0.0) + time.monotonic() - since
        signal_group(pid, signal.SIGCONT)

    def signal_all(self, sig: int) -> None:
        """Send `sig` to every registered worker's process group, continuing the paused ones (a stopped process
        acts on SIGTERM only once it runs again)."""
        with self.cond:
            workers = list(self.workers)
        for pid in workers:
            signal_group(pid, sig)
            signal_group(pid, signal.SIGCONT)

    def serve(self, pid: int, request_fd: int, grant_fd: int) -> threading.Thread:
        """Answer worker `pid`'s requests on its pipes from a thread, until the worker closes them.

        Returns:
            The thread (a daemon), for the launcher to join once the worker has ended.
        """
        thread = threading.Thread(target=self.answer, args=(pid, request_fd, grant_fd), daemon=True,
                                  name=f"lease-{pid}")
        thread.start()
        return thread

    def answer(self, pid: int, request_fd: int, grant_fd: int) -> None:
        try:
            with os.fdopen(request_fd, "rb", buffering=0) as requests:
                for line in iter(requests.readline, b""):
                    if line.strip() == b"acquire":
                        self.acquire(pid)
                        try:
                            os.write(grant_fd, b"granted\n")
                        except OSError:  # the worker is gone meanwhile
                            self.release(pid)
                    elif line.strip() == b"release":
                        self.release(pid)
        finally:
            self.release(pid)
            os.close(grant_fd)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_stopped(pids: list[int], timeout_s: float) -> bool:
    """Wait (at most `timeout_s`) until the kernel shows every one of `pids` stopped or gone (SIGSTOP is
    asynchronous).

    Returns:
        Whether they all were.
    """
    deadline = time.monotonic() + timeout_s

    def quiet(pid: int) -> bool:
        return process_state(pid) in (None, "T", "t", "Z", "X")

    for pid in pids:
        while not quiet(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
    return all(quiet(pid) for pid in pids)
