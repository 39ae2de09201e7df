"""A study made once and shared by workers: `autotune study create` makes it with everything a worker needs
recorded in it (settings, search space, workload, device) and its seeds enqueued; `autotune worker` joins it
with only its name and storage (`autotune.tuner.coordination.Shared` runs the worker's loop)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

import optuna

from autotune.config.settings import SearchSettings
from autotune.config.space import SearchSpace
from autotune.errors import InputError
from autotune.tuner.coordination import Shared, Solo
from autotune.tuner.loop import Tuner
from autotune.tuner.storage import storage_for
from autotune.tuner.study import STUDY_ATTR


def create_study(settings: SearchSettings, report: Callable[..., None] | None = None) -> Tuner:
    """`autotune study create`: the study with its settings recorded and its seeds enqueued, made once (of
    several started at the same moment, only the one that made it enqueues the seeds). Running it again
    with the same settings changes nothing but the total budget (`--trials`); other settings are refused
    (StudyMismatchError).

    Returns:
        A prepared Tuner on the study (`created` says whether this call made it); it confirms and exports
        the best configuration once the workers are done.
    """
    creator = Tuner(settings, report, coordination=Solo(mode="create_once"))
    creator.prepare()
    if creator.created or settings.new_study:
        creator.enqueue_seeds()
    else:
        record_budget(creator.study, settings.trials, report)
    return creator


def record_budget(study: optuna.Study, trials: int, report: Callable[..., None] | None = None) -> None:
    """A study made before with another --trials: the workers that join it from now on run to the new total
    (they read it from the study), as a resumed `autotune search` does."""
    attrs = study.user_attrs.get(STUDY_ATTR) or {}
    before = attrs.get("settings", {}).get("trials")
    if before is None or before == trials:
        return
    study.set_user_attr(STUDY_ATTR, {**attrs, "settings": {**attrs["settings"], "trials": trials}})
    if report is not None:
        report("budget_changed", before=before, after=trials)


def recorded_attrs(study_name: str, storage_url: str) -> dict:
    """What a study was made with (by `study create` or `search`), for a worker that joins it."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_for(storage_url, heartbeat_interval=None))
    except KeyError:
        raise InputError(f"no study named {study_name!r} in {storage_url}: create it first with "
                         f"'autotune study create --study {study_name} --storage {storage_url} --model ...' "
                         "(and the search options), then start the workers") from None
    attrs = study.user_attrs.get(STUDY_ATTR) or {}
    if "settings" not in attrs:
        raise InputError(f"study {study_name!r} in {storage_url} records no autotune settings (it was made by "
                         "another tool or an older autotune): create a new one with 'autotune study create'")
    return attrs


def recorded_settings(study_name: str, storage_url: str, **changes) -> SearchSettings:
    """The settings a study was made with, as a worker that joins it runs them (`changes`: its own root,
    faults)."""
    return SearchSettings.from_dict(recorded_attrs(study_name, storage_url)["settings"], study_name=study_name,
                                    storage=storage_url, new_study=False, **changes)


def join_study(study_name: str, storage_url: str, root: str = "studies", gpu: str | None = None,
               report: Callable[..., None] | None = None, **changes) -> Tuner:
    """`autotune worker`: a prepared worker for a study made by `autotune study create`, searching the space
    recorded in it (not a file that may exist on one host only).

    Returns:
        The worker's Tuner; `run()` runs trials until the study's total budget is reached over all workers.
    """
    attrs = recorded_attrs(study_name, storage_url)
    settings = SearchSettings.from_dict(attrs["settings"], study_name=study_name, storage=storage_url,
                                        new_study=False, root=root, **changes)
    worker = Tuner(settings, report, coordination=Shared(worker_identity(gpu)),
                   space=SearchSpace.from_dict(attrs["space"]))
    worker.prepare()
    return worker


def boot_id() -> str | None:
    """This boot of this host (Linux), so that a worker of a host that was replaced or rebooted since, but
    has the same name (every lent GPU machine is called `vm`), is known to be gone."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def worker_identity(gpu: str | None = None) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "gpu": gpu, "boot": boot_id()}
