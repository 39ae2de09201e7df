"""Optuna storage for a study: RDB storage (SQLite by default) with heartbeats, and the heartbeat thread.

Heartbeats let a restarted orchestrator tell a trial whose orchestrator died (no heartbeat for longer
than the grace period: failed, then retried once with identical params by Optuna's
`RetryHeartbeatStaleTrialCallback`) from a live one (its heartbeat is fresh: left alone). The heartbeat
is sent by a thread of the orchestrator while the trial's worker process does the GPU work, so a long
compile never starves it and a live trial is never marked stale.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

# autotune sends heartbeats itself (Heartbeat below) around ask/tell instead of inside Study.optimize,
# so Optuna's reminder that heartbeats are meant for optimize() does not apply; the experimental markers
# of the heartbeat helpers are noise for users of the CLI.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                        message=r".*(fail_stale_trials|RetryHeartbeatStaleTrialCallback|retry_history).*")

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60


def storage_for(url: str, heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
                grace_period: int | None = GRACE_PERIOD_S, max_retry: int = 1) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. SQLite gets a long busy timeout so optuna-dashboard can read alongside."""
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():  # heartbeat_interval and the retry callback are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat = {}
            if heartbeat_interval:
                heartbeat = dict(heartbeat_interval=int(heartbeat_interval), grace_period=int(grace_period),
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except Exception as exc:  # a wrong URL, a server that is down, a missing driver
        from autotune.errors import InputError

        raise InputError(f"cannot open the storage {url}: {type(exc).__name__}: {exc}") from None


class Heartbeat:
    """Records a heartbeat for one trial every `interval` seconds until stopped (a context manager)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int):
        self.storage = storage
        self.trial_id = trial_id
        self.interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True, name=f"heartbeat-{trial_id}")

    def beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a storage outage must not kill the orchestrator; the next beat retries
                pass
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
