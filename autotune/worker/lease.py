"""The worker's side of the measurement lease: its timed passes run only while the orchestrator has handed it
the device (autotune.tuner.lease), with every other worker of the study paused.

The orchestrator gives a pipelined worker two pipe ends in `AUTOTUNE_LEASE_FDS` ("REQUEST,GRANT"): the worker
writes `acquire` and waits for `granted`, then writes `release`. A worker run alone (no variable) measures at
once, as before. The pipes close with the process, so a worker that dies holding the lease gives it back.
"""

from __future__ import annotations

import contextlib
import os
import time

LEASE_VARIABLE = "AUTOTUNE_LEASE_FDS"


class LeaseLost(RuntimeError):
    """The orchestrator closed the lease's pipe (it is gone): nothing may be measured."""


class LeaseClient:
    """Asks the orchestrator for the device over two pipe ends (file descriptors this process inherited)."""

    def __init__(self, request_fd: int, grant_fd: int):
        self.request_fd, self.grant_fd = request_fd, grant_fd

    @classmethod
    def from_environment(cls) -> "LeaseClient | None":
        """The lease this worker was given, or None where it runs alone."""
        given = os.environ.get(LEASE_VARIABLE, "")
        parts = given.split(",")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        return cls(int(parts[0]), int(parts[1]))

    def acquire(self) -> float:
        """Wait until the orchestrator hands this worker the device.

        Returns:
            Seconds spent waiting. Raises LeaseLost where the orchestrator is gone.
        """
        started = time.perf_counter()
        os.write(self.request_fd, b"acquire\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = os.read(self.grant_fd, 64)
            if not chunk:
                raise LeaseLost("the orchestrator closed the measurement lease")
            answer += chunk
        return time.perf_counter() - started

    def release(self) -> None:
        try:
            os.write(self.request_fd, b"release\n")
        except OSError:  # the orchestrator is gone: nothing to give back
            pass


def process_state(pid: int) -> str | None:
    """The state letter of process `pid` in /proc/PID/stat (R, S, T for stopped, Z for a zombie, ...); None where
    it cannot be read (no such process, no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:][:1] or None


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP): it runs nothing until it is continued."""
    return process_state(pid) in ("T", "t")


@contextlib.contextmanager
def measurement_lease():
    """Hold the device for the timed passes (a context manager); nothing where this worker runs alone.

    Yields:
        Seconds spent waiting for the lease (0.0 alone).
    """
    client = LeaseClient.from_environment()
    if client is None:
        yield 0.0
        return
    waited = client.acquire()
    try:
        yield waited
    finally:
        client.release()
