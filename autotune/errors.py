"""Errors autotune raises. Each message says what was wrong and how to fix the input.

The CLI turns every `AutotuneError` into a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class AutotuneError(Exception):
    """Base class: a problem the user can fix. `exit_code` is what the CLI exits with."""

    exit_code = 2


class InputError(AutotuneError):
    """A bad argument, file or model path."""


class SpaceError(InputError):
    """A search-space file that cannot be used: malformed YAML, an unknown knob or value."""


class CandidateError(InputError):
    """A Candidate value outside its knob's domain."""


class WorkloadError(InputError):
    """A prompt file or workload setting that cannot be used."""


class PresetError(InputError):
    """A preset file that cannot be loaded (missing, malformed, or from another format version)."""


class StudyMismatchError(AutotuneError):
    """Resuming a study with a different search space, workload or model than it was created with."""

    exit_code = 5


class NoFeasibleTrialError(AutotuneError):
    """The study has no trial that satisfies its constraints, so there is nothing to export."""

    exit_code = 3


class SystemicFailureError(AutotuneError):
    """The study cannot make progress (the baseline failed, or every trial fails the same way)."""

    exit_code = 4


class WorkerExitError(AutotuneError):
    """A worker started by `search --gpus` stopped with an error; the study keeps what it measured."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class StorageUnavailableError(AutotuneError):
    """The study's storage (a database server) could not be reached for longer than a worker waits."""

    exit_code = 6


class StorageFaultError(AutotuneError):
    """The study's storage failed mid-run (a full disk, a removed or read-only database): the run stops; what
    reached disk is kept, and rerunning the same command resumes once the storage is fixed."""

    exit_code = 6


class VerificationFailedError(AutotuneError):
    """`autotune verify`: the preset ran here slower than recorded, beyond the threshold, or below its agreement
    bar."""

    exit_code = 7


class StudyBusyError(InputError):
    """Another process runs the study on a storage that takes one process at a time (SQLite)."""


class FolderExportError(AutotuneError):
    """A preset could not be written as a model folder (its model did not load or save on this machine); the
    preset JSON is kept."""

    exit_code = 4
