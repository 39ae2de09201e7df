"""Opening a study: made new, resumed, or joined, with what it was made with recorded in it and checked on
every resume, and its folder (results, worker logs, the baseline reference) claimed for it alone."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import optuna

from autotune import __version__
from autotune.config.settings import SearchSettings, default_preset_path, default_storage_url
from autotune.config.space import SearchSpace
from autotune.errors import InputError, StudyMismatchError
from autotune.tuner.handle import StudyHandle
from autotune.tuner.machine import fingerprint
from autotune.tuner.storage import sqlite_path, storage_for, storage_label
from autotune.tuner.storage_guard import check_writable_dir, lock_study, release_study

STUDY_ATTR = "autotune"  # the study user attribute holding what it was made with
FOLDER_FILE = "STORAGE"  # in a study's folder: which storage's study the folder serves (one per folder)
# How a study is opened: `search` makes or resumes it; `study create` makes it once (several started at the
# same moment find the one that was made); a worker joins a study made before.
OPEN_MODES = ("create_or_load", "create_once", "load")
CREATE_WAIT_S = 60  # how long `study create` waits for another process's lock of a SQLite study
# What a resumed study must keep, and how a refusal names it.
SAME_STUDY = (("model", "model"), ("workload_fingerprint", "workload (prompts, batch size, new tokens)"),
              ("space_fingerprint", "search space"), ("machine_fingerprint", "machine (device)"),
              ("min_agreement", "--min-agreement"), ("gate", "--gate"), ("assistant", "--assistant"),
              ("vram", "--vram"), ("objective", "--objective"))
# What a study made by an older version recorded implicitly: it judged equivalence by the baseline rule.
LEGACY_ATTRS = {"gate": "baseline", "objective": "decode_tokens_per_s"}


def study_attrs(settings: SearchSettings, model: str, assistant: str | None, space: SearchSpace,
                environment: dict) -> dict:
    """What a study records about itself (its STUDY_ATTR user attribute)."""
    return {
        "autotune_version": __version__, "study_name": settings.study_name, "model": model, "assistant": assistant,
        "workload": settings.workload.to_dict(), "workload_fingerprint": settings.workload.fingerprint(),
        "space": space.to_dict(), "space_fingerprint": space.fingerprint(), "device": environment["device"],
        "machine_fingerprint": fingerprint(environment), "min_agreement": settings.min_agreement,
        "gate": settings.gate, "vram": settings.vram, "objective": settings.objective_metric, "command": settings.command,
        "settings": settings.to_dict(),
    }


def check_same_study(name: str, existing: dict, attrs: dict, ignore: tuple[str, ...] = ()) -> None:
    """StudyMismatchError naming the first of SAME_STUDY that differs (those in `ignore` aside)."""
    for key, what in SAME_STUDY:
        before = existing.get(key, LEGACY_ATTRS.get(key))
        if key not in ignore and before != attrs.get(key):
            raise StudyMismatchError(
                f"study {name!r} was created with another {what} ({before!r}, now {attrs.get(key)!r}): "
                "resume it with the same settings, choose another --study name, or pass --new-study to start "
                "it over")


def claim_folder(settings: SearchSettings) -> None:
    """A study's folder serves one study. Two studies of one name in other storages (a SQLite file and the
    journal file of `search --gpus`) would overwrite each other's results there, trial by trial: refused.
    The folder records its storage by kind and file name (not by path, so that a studies folder may move)."""
    folder = settings.study_dir
    mine = storage_label(settings.storage_url)
    marker = folder / FOLDER_FILE
    if marker.is_file():
        theirs = marker.read_text(encoding="utf-8").strip()
        if theirs != mine:
            raise InputError(
                f"the folder {folder} holds the results of the study {settings.study_name!r} in another storage "
                f"({theirs}; this one is {mine}): resume that study with its own --storage, or give another "
                f"--study name or --root. If that storage was only renamed or moved, write '{mine}' into {marker}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(mine + "\n", encoding="utf-8")


def start_over(settings: SearchSettings, storage, report: Callable[..., None]) -> None:
    """--new-study: delete the study of this name, and move its folder and its preset aside (kept)."""
    try:
        optuna.delete_study(study_name=settings.study_name, storage=storage)
        report("deleted", study=settings.study_name)
    except KeyError:
        pass
    # one stamp for the folder and the preset, so that the two kept halves of one study read as a pair
    replaced = f"{settings.study_name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
    preset = default_preset_path(settings.root, settings.study_name)
    for path, aside in ((settings.study_dir, replaced), (preset, f"{replaced}.preset.json")):
        if path.exists():
            path.rename(path.with_name(aside))
            report("moved_aside", path=str(path.with_name(aside)))


def refuse_lost_study(settings: SearchSettings, storage) -> None:
    """A study's folder with results, of a study its storage does not have (the database was removed or
    replaced): a new study there would overwrite them, trial by trial, and then its preset. Refused."""
    if not any((settings.study_dir / "results").glob("trial-*.json")):
        return
    if settings.study_name in optuna.get_all_study_names(storage):
        return
    raise StudyMismatchError(
        f"the folder {settings.study_dir} holds results of a study {settings.study_name!r} that "
        f"{settings.storage_url} does not have (its database was removed or replaced): put that database back "
        "and rerun, or pass --new-study to start over (the folder and the preset are moved aside, nothing is "
        "deleted), or choose another --study or --root")


def open_storage(settings: SearchSettings):
    """The study's storage, with heartbeats and retries as the settings say."""
    return storage_for(settings.storage_url, settings.heartbeat_interval, settings.grace_period, settings.max_retry)


def create_or_load(name: str, storage, sampler, mode: str) -> tuple[optuna.Study, bool]:
    """The study, and whether this call made it."""
    if mode == "load":
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler), False
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize")
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler), False


def open_study(settings: SearchSettings, attrs: dict, sampler, mode: str, report: Callable[..., None],
               left_out: tuple = (), ignore: tuple[str, ...] = ()) -> tuple[StudyHandle, bool]:
    """Open the study of `settings` as `mode` says (OPEN_MODES), record `attrs` in a new one or check them
    against a resumed one (`ignore`: keys that may differ), and claim its folder.

    Returns:
        The study's handle, and whether this call made the study.
    """
    check_writable_dir(settings.root)
    check_writable_dir(settings.study_dir)  # results, logs: its parent, the root, where it is not made yet
    # before --new-study: never start over a study another process runs; `study create` is short, so several
    # started at once take turns
    lock_study(settings.storage_url, wait_s=CREATE_WAIT_S if mode == "create_once" else 0)
    storage = open_storage(settings)
    if settings.new_study and mode != "load":
        start_over(settings, storage, report)
    if mode != "load":
        refuse_lost_study(settings, storage)
    study, created = create_or_load(settings.study_name, storage, sampler, mode)
    existing = study.user_attrs.get(STUDY_ATTR)
    if existing is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental; it is what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([attrs["objective"]])
        study.set_user_attr(STUDY_ATTR, attrs)
        for knob, value, why in left_out:
            report("left_out", knob=knob, value=value, why=why)
    else:
        check_same_study(settings.study_name, existing, attrs, ignore)
    claim_folder(settings)
    if mode == "create_once":  # `study create` makes the study for workers: one of them may hold it next
        release_study(settings.storage_url)
    return StudyHandle.of(study, storage), created


def load_handle(study_name: str, storage_url: str) -> StudyHandle:
    """An existing study with its storage; InputError where there is none of that name."""
    storage = storage_for(storage_url, heartbeat_interval=None)
    try:
        return StudyHandle.of(optuna.load_study(study_name=study_name, storage=storage), storage)
    except KeyError:
        raise InputError(f"no study named {study_name!r} in {storage_url}: run 'autotune search' first, "
                         "or give the right --study / --storage") from None


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    """An existing study (show, report, export); InputError where there is none of that name."""
    return load_handle(study_name, storage_url).study


def existing_study_url(storage: str | None, root: str | Path, study_name: str) -> str:
    """The storage URL of a study that must exist already (export, reconcile): a missing default SQLite
    file is an input error, not a new empty database."""
    url = storage or default_storage_url(root, study_name)
    if url.startswith("sqlite:///") and not sqlite_path(url).exists():
        raise InputError(f"no study database at {sqlite_path(url)}: run 'autotune search' first, "
                         "or give --storage / --root")
    return url


def recorded(study: optuna.Study) -> dict:
    """What the study was made with (its STUDY_ATTR); InputError for a study autotune did not make."""
    attrs = study.user_attrs.get(STUDY_ATTR)
    if attrs is None:
        raise InputError(f"study {study.study_name!r} was not made by autotune (it has no '{STUDY_ATTR}' "
                         "attribute)")
    return attrs
