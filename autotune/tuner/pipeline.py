"""Trials side by side: while one trial measures, the next ones start, load and compile in their own processes.

    `slots` threads, each: ask (the sampler counts running trials with the constant liar) -> admit by
       memory -> launch with the measurement lease, in a worker started ahead -> record -> judge
       (the baseline is the first trial asked; the first wave loads and compiles beside it, and waits for its
       reference only to be scored; a baseline that fails stops the study, and the others with it)
    -> what is left (retries of the last failures), one at a time
    -> the best's confirmations, `slots` at a time under the same lease (autotune.tuner.confirm)

Only the timed passes hold the device alone (autotune.tuner.lease): the others are paused meanwhile, so a
measurement is as clean as a sequential study's. How many run at once is bounded by cores (`auto_slots`)
and by memory: each launch reserves what the memory model estimates for its candidate (`Admission`).
A trial's worker is one the pool started while earlier trials ran (autotune.worker.prestart): its start-up,
seconds of imports and the CUDA context, is off the trial's clock.

Ctrl-C or SIGTERM reaches the main thread, which kills every worker's process group; each slot then records
its trial as interrupted, as a sequential study does. A failure that stops the study (SystemicFailureError)
stops the other slots the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from autotune.interrupt import interruptible
from autotune.tuner.lease import Lease
from autotune.worker.launcher import KILL_GRACE_S
from autotune.worker.prestart import WarmPool

CORES_PER_SLOT = 3  # a compiling trial keeps several cores busy (Inductor's compile workers)
MAX_SLOTS = 6
# Workers kept started ahead of their trials: trials end every half minute or so side by side, and a worker
# starts up in 10-30 s on a busy machine, so two are ready for the next launches.
PRESTARTED = 2
MEMORY_HEADROOM = 0.9  # the share of the device's memory that trials side by side may reserve
ESTIMATE_MARGIN = 1.25  # a reservation is the memory model's estimate and this much more


def auto_slots(environment: dict, vram: int | None) -> int:
    """Trials side by side where `--overlap` is 0: 1 on a CPU (the measurement is the cores), else one per
    CORES_PER_SLOT cores, at most MAX_SLOTS, and no more than the device's memory holds at the `--vram` budget.

    Args:
        environment: the machine's probe (autotune.tuner.machine.probe).
        vram: the study's memory budget per trial, in bytes (None: the whole device).

    Returns:
        The number of trials to run side by side (at least 1).
    """
    if environment.get("device") != "cuda":
        return 1
    by_cores = max(1, min(MAX_SLOTS, (environment.get("cpu_count") or os.cpu_count() or 1) // CORES_PER_SLOT))
    total = environment.get("total_memory_bytes")
    if not total or not vram:
        return 1
    return max(1, min(by_cores, int(total * MEMORY_HEADROOM // vram)))


class Admission:
    """Memory reserved by the trials in flight: a launch waits until its candidate's estimate fits beside theirs.
    A trial alone is always admitted (the prescreen already judged it against the budget)."""

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self.reserved = 0
        self.in_flight = 0
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int | None):
        """Hold `nbytes` (None: nothing known, the whole capacity) for the duration of a launch."""
        need = self.capacity if nbytes is None or self.capacity is None else min(nbytes, self.capacity)
        with self.cond:
            while self.in_flight and self.capacity is not None and self.reserved + need > self.capacity:
                self.cond.wait(timeout=1.0)
            self.reserved += need or 0
            self.in_flight += 1
        try:
            yield
        finally:
            with self.cond:
                self.reserved -= need or 0
                self.in_flight -= 1
                self.cond.notify_all()


def reservation(estimate, vram: int | None) -> int | None:
    """What a launch reserves: the memory model's estimate with a margin, capped at the `--vram` budget (which
    the worker is held to); the budget alone where there is no estimate."""
    if estimate is None or not getattr(estimate, "total", None):
        return vram
    guess = int(estimate.total * ESTIMATE_MARGIN)
    return min(guess, vram) if vram else guess


class Pipeline:
    """Runs a Tuner's trials `slots` at a time (see the module's docstring)."""

    def __init__(self, tuner, slots: int):
        self.tuner, self.slots = tuner, slots
        self.lease = Lease()
        env = tuner.environment
        capacity = env.get("total_memory_bytes")
        self.admission = Admission(int(capacity * MEMORY_HEADROOM) if capacity else None)
        self.pool = WarmPool(min(PRESTARTED, slots), env.get("device", "cpu"),
                             tuner.settings.study_dir / "trials" / "prestarted", self.lease)
        self.in_flight = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run the study's trials to its budget. Raises what stopped it: KeyboardInterrupt, SystemExit, or the
        first error of a slot."""
        tuner = self.tuner
        tuner.launcher.lease, tuner.admission = self.lease, self.admission
        tuner.launcher.side_by_side = self.slots
        try:
            # one worker per slot, so that the first wave finds them started
            self.pool.start(tuner.launcher.worker_env(), count=self.slots)
            # the first trials start beside the baseline and wait for its reference only to be scored
            tuner.launcher.reference_expected = not tuner.reference_path().exists()
            tuner.launcher.stop_below_path().unlink(missing_ok=True)  # an earlier run's threshold: published anew
            tuner.launcher.pool = self.pool
            self.run_slots()
        finally:
            tuner.launcher.pool, tuner.launcher.reference_expected = None, False
            self.pool.close()
        while not tuner.coordination.done():  # retries enqueued by the last trials
            tuner.step()

    def run_slots(self) -> None:
        threads = [threading.Thread(target=self.slot, name=f"trial-slot-{i}", daemon=True)
                   for i in range(self.slots)]
        for thread in threads:
            thread.start()
        try:
            while alive := [thread for thread in threads if thread.is_alive()]:
                with interruptible():
                    alive[0].join(timeout=0.2)
        except BaseException as stop:
            self.stop(stop)
            self.wait_for_slots(threads)
            raise
        if self.error is not None:
            raise self.error

    def slot(self) -> None:
        """One thread's trials, until the budget is taken or the study stops."""
        tuner = self.tuner
        try:
            while tuner.stop_reason is None:
                with tuner.lock:
                    if tuner.finished_count() + self.in_flight >= tuner.settings.trials:
                        return
                    self.in_flight += 1
                try:
                    tuner.step()
                finally:
                    with tuner.lock:
                        self.in_flight -= 1
        except BaseException as exc:  # the first error stops the study; the others' trials end as interrupted
            if tuner.stop_reason is None:
                self.error = exc
                self.stop(exc)

    def stop(self, reason: BaseException) -> None:
        """Stop every slot: the trials in flight are killed (paused ones too) and recorded as interrupted."""
        self.tuner.stop_reason = self.tuner.stop_reason or reason
        self.lease.signal_all(signal.SIGTERM)

    def wait_for_slots(self, threads: list[threading.Thread]) -> None:
        """Wait for the slots to record their trials; workers that outlive SIGTERM are killed."""
        deadline = time.monotonic() + KILL_GRACE_S
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.lease.signal_all(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=KILL_GRACE_S + 5)
