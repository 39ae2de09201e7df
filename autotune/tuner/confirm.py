"""The best configuration, confirmed: re-measured `--confirm` times in fresh processes, its coefficient of
variation recorded (R23 of ../shared/RELIABILITY.md), and the preset written before and after."""

from __future__ import annotations

import queue
import signal
import statistics
import threading
from pathlib import Path
from typing import Callable, Iterator

import optuna

from autotune.config.objective import DEFAULT_METRIC
from autotune.config.candidate import Candidate
from autotune.config.settings import SearchSettings
from autotune.config.measurement import Measurement
from autotune.errors import NoFeasibleTrialError
from autotune.interrupt import interruptible
from autotune.tuner.export import STABILITY_ATTR, export_study
from autotune.tuner.launching import TrialLauncher
from autotune.tuner.trials import best_feasible_trial
from autotune.worker.launcher import KILL_GRACE_S

# coefficient of variation of the re-measured objective (decode tok/s unless --objective says otherwise) under
# which a preset is stable
STABLE_CV = 0.05


def stability(best, values: list[float | None], n: int, metric: str = DEFAULT_METRIC) -> dict:
    """The confirmations so far of trial `best` out of `n` (their `metric`, the study's objective): their median
    and coefficient of variation; stable once all `n` ran with a CV under STABLE_CV."""
    measured = [v for v in values if v is not None]
    cv = statistics.pstdev(measured) / statistics.fmean(measured) if len(measured) >= 2 else None
    return {"trial": best.number, "metric": metric, "runs": values, "recorded": best.value,
            "median": statistics.median(measured) if measured else None, "cv": cv,
            "stable": cv is not None and cv < STABLE_CV and len(measured) == n}


def confirm_best(study: optuna.Study, n: int, launcher: TrialLauncher, report: Callable[..., None]) -> dict | None:
    """Re-measure the best feasible configuration `n` times in fresh processes. Kept in the study after every
    run (reused while the best trial stays the same: a study stopped during its confirmations resumes them
    where they stopped) and carried into the preset.

    Returns:
        The stability record (see `stability`), or None where no trial is feasible.
    """
    try:
        best = best_feasible_trial(study.get_trials(deepcopy=False))
    except NoFeasibleTrialError:
        return None
    earlier = study.user_attrs.get(STABILITY_ATTR)
    same = bool(earlier) and earlier.get("trial") == best.number
    if n == 0 or (same and len(earlier.get("runs", [])) >= n):
        return earlier
    candidate = Candidate.from_json(best.user_attrs["candidate"])
    values = list(earlier["runs"]) if same else []
    report("confirm", number=best.number, runs=n - len(values))
    for m in confirmation_runs(launcher, best.number, candidate, range(len(values), n)):
        values.append(getattr(m, launcher.settings.objective_metric) if m.ok else None)
        record = stability(best, values, n, launcher.settings.objective_metric)
        study.set_user_attr(STABILITY_ATTR, record)
    report("confirmed", **record)
    return record


def confirmation_runs(launcher: TrialLauncher, number: int, candidate: Candidate,
                      runs: range) -> Iterator[Measurement]:
    """The confirmation runs `runs` of trial `number`, each in a fresh process, yielded as they end. Where the
    study's trials ran side by side (the launcher has the measurement lease), up to `launcher.side_by_side` run
    at once: they start, load and compile together and measure one at a time under the lease, as trials do, so
    each measurement stays as clean as a sequential one.

    Args:
        launcher: the study's launcher (its lease and `side_by_side` say how many run at once).
        number: the trial whose configuration is re-measured.
        candidate: its configuration.
        runs: the indices of the runs (each its own folder, `confirm-<number>-<index>`).

    Returns:
        An iterator over their Measurements, in the order they end.
    """
    def one(i: int) -> Measurement:
        return launcher.run(number, "confirm", candidate, job_name=f"confirm-{number:05d}-{i}")

    at_once = min(len(runs), launcher.side_by_side if launcher.lease is not None else 1)
    if at_once <= 1:
        for i in runs:
            yield one(i)
        return
    yield from side_by_side(one, runs, at_once, launcher.lease)


def side_by_side(one: Callable[[int], Measurement], runs: range, at_once: int, lease) -> Iterator[Measurement]:
    """`one(i)` for every i of `runs`, `at_once` threads at a time, yielded as they end. Ctrl-C or SIGTERM (in
    the main thread) kills the workers in flight through `lease`; an error of a run is raised once the others
    have ended."""
    todo, ended, errors = list(runs), queue.Queue(), []

    def worker() -> None:
        while todo:
            try:
                i = todo.pop(0)
            except IndexError:
                return
            try:
                ended.put(one(i))
            except BaseException as exc:  # raised in the main thread once the others have ended
                errors.append(exc)
                ended.put(None)

    threads = [threading.Thread(target=worker, name=f"confirm-{k}", daemon=True) for k in range(at_once)]
    for thread in threads:
        thread.start()
    try:
        for _ in runs:
            while True:
                with interruptible():
                    try:
                        m = ended.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
            if m is not None:
                yield m
    except BaseException:  # Ctrl-C, SIGTERM: the runs in flight are killed (paused ones too)
        todo.clear()
        lease.signal_all(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=KILL_GRACE_S)
        lease.signal_all(signal.SIGKILL)
        raise
    if errors:
        raise errors[0]


def confirm_and_export(study: optuna.Study, settings: SearchSettings, launcher: TrialLauncher,
                       report: Callable[..., None], out: str | Path) -> Path:
    """The preset, then the confirmations, then the preset again with their stability: a run that ends
    during the confirmations keeps a preset, and a rerun resumes them.

    Returns:
        The preset's path.
    """
    if settings.confirm:
        export_study(study, out, settings.study_dir)
        confirm_best(study, settings.confirm, launcher, report)
    return export_study(study, out, settings.study_dir)
