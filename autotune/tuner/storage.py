"""Optuna storage for a study: RDB storage (SQLite by default, PostgreSQL for several workers) with
heartbeats, Optuna's JournalStorage on a local file (several workers on one host, no server), and the
heartbeat thread.

A storage is named by a string: a database URL (`sqlite:///studies/x.db`, `postgresql://user:pw@host/db`)
or, without `://`, the path of a journal file (`studies/x.log`, what optuna-dashboard also opens).

Heartbeats let a restarted orchestrator tell a trial whose orchestrator died (no heartbeat for longer
than the grace period: failed, then retried once with identical params by Optuna's
`RetryHeartbeatStaleTrialCallback`) from a live one (its heartbeat is fresh: left alone). The heartbeat
is sent by a thread of the orchestrator while the trial's worker process does the GPU work, so a long
compile never starves it and a live trial is never marked stale.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from autotune.config.settings import default
from autotune.errors import InputError

# autotune sends heartbeats itself (Heartbeat below) around ask/tell instead of inside Study.optimize,
# so Optuna's reminder that heartbeats are meant for optimize() does not apply; the experimental markers
# of the heartbeat helpers are noise for users of the CLI.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                        message=r".*(fail_stale_trials|RetryHeartbeatStaleTrialCallback|retry_history).*")

HEARTBEAT_INTERVAL_S = default("heartbeat_interval")
GRACE_PERIOD_S = default("grace_period")
CREATE_ATTEMPTS = 5  # opening a fresh database from several processes at once: its tables are made once


def is_journal(url: str) -> bool:
    """A storage named by a file path (no `://`) is Optuna's JournalStorage on that file."""
    return "://" not in url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> Path:
    """The database file of a `sqlite:///` URL."""
    return Path(url[len("sqlite:///"):])


def storage_unavailable(exc: BaseException) -> bool:
    """An error of a storage that cannot be reached (not a wrong request)."""
    import sqlalchemy.exc

    return isinstance(exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                            sqlalchemy.exc.InterfaceError))


def storage_label(url: str) -> str:
    """A storage as a study's folder records it: its kind and file name (or, for a server, its database)."""
    if is_journal(url):
        return f"journal file {Path(url).name}"
    if is_sqlite(url):
        return f"sqlite file {sqlite_path(url).name}"
    return f"database {url.rsplit('/', 1)[-1]} on a server"


def is_shareable(url: str) -> bool:
    """Whether several workers may share this storage: a server database or a journal file, never SQLite
    (Optuna's FAQ: SQLite is not for parallel optimization)."""
    return not is_sqlite(url)


def with_driver(url: str) -> str:
    """`postgresql://` means SQLAlchemy's psycopg2 driver; where only psycopg 3 is installed (autotune's
    `postgres` extra), use that instead, so that the plain URL a user types works."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def storage_for(url: str, heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
                grace_period: int | None = GRACE_PERIOD_S, max_retry: int = 1) -> optuna.storages.BaseStorage:
    """Optuna's storage for `url`: a journal file, or RDB storage with heartbeats. SQLite gets a long busy
    timeout so optuna-dashboard can read alongside; a server database checks pooled connections before
    use, so that a worker outlives a restart of the server."""
    if is_journal(url):
        return journal_storage(url)
    engine_kwargs = {}
    if is_sqlite(url):
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    heartbeat = {}
    if heartbeat_interval:
        heartbeat = dict(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period),
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeat_interval and the retry callback are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=engine_kwargs, **heartbeat)
        except Exception as exc:  # a wrong URL, a server that is down, a missing driver
            if attempt + 1 < CREATE_ATTEMPTS and made_concurrently(exc):
                time.sleep(0.5 + attempt)  # another process is making the tables: use them once made
                continue
            raise InputError(f"cannot open the storage {url}: {type(exc).__name__}: {exc}") from None


def made_concurrently(exc: Exception) -> bool:
    """An error of two processes creating the same tables of a fresh database at once."""
    text = str(exc).lower()
    return any(marker in text for marker in ("already exists", "duplicate key", "unique constraint",
                                              "uniqueviolation"))


def journal_storage(path: str) -> optuna.storages.JournalStorage:
    """Optuna's JournalStorage on a local file: safe for several processes of one host (file locks), no
    server; it has no heartbeats, so whoever starts the workers watches them (autotune.tuner.local_workers)."""
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


class Heartbeat:
    """Records a heartbeat for one trial every `interval` seconds until stopped (a context manager)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int):
        self.storage = storage
        self.trial_id = trial_id
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True, name=f"heartbeat-{trial_id}")

    def record(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception:  # a storage outage must not kill the orchestrator; the next beat retries
            pass

    def beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.record()

    def __enter__(self) -> "Heartbeat":
        # the first beat before the trial goes on: Optuna sees a RUNNING trial stale only once it has a heartbeat,
        # so one whose orchestrator died before a first beat of the thread would stay RUNNING for good
        if self.interval:
            self.record()
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
