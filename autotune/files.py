"""Files that readers must see whole: the one atomic write every layer uses (results, presets, reports)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part.

    A temporary file in the same folder is written, flushed and fsynced, renamed over the target, and the
    folder is fsynced so that the rename survives a crash. The file gets the permissions of any file the user
    creates (0666 less the umask), not the 0600 `mkstemp` gives a temporary file: presets and reports are
    shared.

    Args:
        path: the file to write; its folder is created when missing.
        text: the whole content: text (written as UTF-8) or bytes.

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
        os.chmod(tmp, 0o666 & ~current_umask())
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


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def remove_leftovers(path: str | Path) -> None:
    """Remove temporary files that a write of `path` killed before its rename left behind."""
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def read_text(path: str | Path, what: str, error: type[Exception], limit: int = 64 << 20) -> str:
    """A text file a user gives (prompts, a search space, a preset), read as UTF-8, or `error` with one line
    that names the file and says how to fix it: not UTF-8, larger than `limit` bytes, or unreadable.

    Args:
        path: the file.
        what: what the file is, for the message ("prompt file").
        error: the AutotuneError class to raise.
        limit: the largest size read, in bytes.

    Returns:
        The file's text.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{what} {str(path)!r} is {size} bytes, more than the {limit} this reads: give a smaller "
                        "file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}; check that it exists and is "
                    "readable") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r});"
                    " save it as UTF-8") from None
