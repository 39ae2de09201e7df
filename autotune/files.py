"""Files that readers must see whole: the one atomic write every layer uses (results, presets, reports)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str | bytes, *, readable: bool = False) -> Path:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part.

    A temporary file in the same folder is written, flushed and fsynced, renamed over the target, and the
    folder is fsynced so that the rename survives a crash. `mkstemp` makes the file private (0600);
    `readable` gives it the permissions of a file created normally (a report is for reading).

    Args:
        path: the file to write; its folder is created when missing.
        text: the whole content: text (written as UTF-8) or bytes.
        readable: apply the process's umask to 0666 instead of keeping the temporary file's 0600.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if readable:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove_leftovers(path: str | Path) -> None:
    """Remove temporary files that a write of `path` killed before its rename left behind."""
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
