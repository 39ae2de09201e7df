"""The phases a trial's worker goes through, for progress display: one word per line in a file beside
the job.

The worker appends to `PHASES` in its job folder as it goes (start -> load -> warmup -> measure ->
compare); the launcher reads it while it waits and reports every new line, so a phase shorter than the
launcher's polling interval is still seen. A line is one small append, so a reader sees whole lines (a
partial last line is left for the next read).
"""

from __future__ import annotations

from pathlib import Path

PHASES = ("start", "load", "warmup", "measure", "compare")
LABELS = {"start": "starting", "load": "loading", "warmup": "warm-up/compile", "measure": "measuring",
          "compare": "comparing with the baseline"}
FILE_NAME = "PHASES"


def write_phase(job_dir: str | Path | None, phase: str, fresh: bool = False) -> None:
    """Append `phase` (with `fresh`: start the file over)."""
    if job_dir is None:
        return
    try:
        with open(Path(job_dir) / FILE_NAME, "w" if fresh else "a", encoding="utf-8") as f:
            f.write(phase + "\n")
    except OSError:  # progress display only: never a reason to fail a trial
        pass


def read_phases(job_dir: str | Path) -> list[str]:
    """The phases written so far, in order (complete lines only)."""
    try:
        text = (Path(job_dir) / FILE_NAME).read_text(encoding="utf-8")
    except OSError:
        return []
    return [line for line in text.split("\n")[:-1] if line in PHASES]
