"""Guards around where a study lives: one process per SQLite study (a lock beside its database), folders and
export targets checked writable before the first trial, and storage faults (a full disk, a removed or
read-only database) turned into a message that says what happened and what to do.

The lock is `fcntl.flock` on `<db>.lock`: the kernel releases it when its holder exits, however it exits
(kill -9 included), so a dead run never blocks the next. It is held per process, re-entrantly: one process
that opens its study twice (a Python caller, `--new-study`) holds it once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path

from autotune.errors import InputError, StorageFaultError, StudyBusyError
from autotune.interrupt import Poll
from autotune.tuner.storage import is_sqlite, sqlite_path, storage_unavailable

_HELD: dict[str, int] = {}  # lock file -> its open descriptor, for this process
# Errors of a filesystem that cannot take a write: full, read-only, not permitted, over quota.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite storage (`<db>.lock`); None for other storages (they take several workers)."""
    if not is_sqlite(url) or sqlite_path(url).name in ("", ":memory:"):  # in memory: one process's own
        return None
    return sqlite_path(url).with_name(sqlite_path(url).name + ".lock")


def lock_study(url: str, wait_s: float = 0) -> None:
    """Hold the SQLite study's lock for this process's lifetime (release_study releases it earlier);
    StudyBusyError naming the holder's pid when another process holds it for longer than `wait_s` (a wait
    that a signal interrupts, as every wait of the tuner)."""
    path = lock_path(url)
    if path is None or str(path.resolve()) in _HELD:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the trials' worker processes
    except OSError as exc:
        raise not_writable(path.parent, exc) from None
    poll = Poll(wait_s, 0.2)
    try:
        while not flocked(fd):
            if poll.expired():
                refuse_busy(url, fd)
            poll.wait()
    except BaseException:  # busy, or a signal during the wait
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[str(path.resolve())] = fd


def flocked(fd: int) -> bool:
    """Take the exclusive lock of `fd` if no other process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def refuse_busy(url: str, fd: int) -> None:
    """StudyBusyError naming the pid the lock's holder wrote into it."""
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    raise StudyBusyError(
        f"the SQLite study database {sqlite_path(url)} is in use by another autotune process (pid {holder}): "
        "SQLite takes one process at a time; wait for it to finish or stop it, then rerun (several workers "
        "need PostgreSQL or a journal file: search --gpus)")


def release_study(url: str) -> None:
    """Release this process's lock of a SQLite study (nothing where it holds none)."""
    path = lock_path(url)
    fd = _HELD.pop(str(path.resolve()), None) if path is not None else None
    if fd is not None:
        os.close(fd)


def not_writable(folder: Path, exc: OSError) -> InputError:
    return InputError(f"cannot write in {folder} ({exc.strerror or exc}): autotune keeps the study's lock, results "
                      "and preset there; make it writable, or copy the studies folder to a writable place and "
                      "pass --root")


def check_writable_dir(folder: str | Path) -> None:
    """InputError unless a file can be made in `folder` (or, where it does not exist yet, in its nearest
    existing parent): tried with a temporary file, which also tells a read-only filesystem (where root's
    permission checks pass)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot make the folder {folder}: {existing} is a file; give another path")
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".autotune-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise not_writable(existing, exc) from None


def check_export_target(path: str | Path) -> None:
    """InputError where the preset cannot be written at `path`: checked before the first trial, not after
    the last one.

    Args:
        path: the preset's path.
    """
    from autotune.runtime.hints import PRESET_IN_FOLDER
    from autotune.tuner.export import is_folder_target

    path = Path(path)
    if is_folder_target(path):
        if path.is_dir() and any(path.iterdir()) and not (path / PRESET_IN_FOLDER).is_file():
            raise InputError(f"the model folder {path} holds other files: give a new or empty folder (an earlier "
                             "export there is replaced)")
        path = path / PRESET_IN_FOLDER
    elif path.exists() and not path.is_file():
        raise InputError(f"the preset path {path} is not a file: give a file path with -o/--out")
    try:
        check_writable_dir(path.parent)
    except InputError as exc:
        raise InputError(f"the preset cannot be written to {path}: {exc}") from None


@contextlib.contextmanager
def storage_faults(url: str, study_dir: str | Path):
    """Turn a storage fault (a full disk, a removed or read-only database, a folder that cannot be written)
    into StorageFaultError: what happened and what to do. Measurements written before it stay on disk."""
    results = Path(study_dir) / "results"
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL_OR_READ_ONLY:
            raise
        raise StorageFaultError(
            f"cannot write {exc.filename or 'a file'} ({exc.strerror}): free space there or make it writable, "
            f"then rerun the same command to resume (the measurements in {results} are kept; the trial that "
            "was running runs again)") from None
    except Exception as exc:
        if not storage_unavailable(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageFaultError(
            f"the study's storage {url} failed ({first[:200]}): the measurements written so far are in "
            f"{results}; restore the storage (free disk space, put the database file back) and rerun the same "
            "command, which imports them") from None
