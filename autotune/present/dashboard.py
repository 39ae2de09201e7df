"""optuna-dashboard on a study's storage.

The dashboard reads what the Tuner writes: the objective's name (`study.set_metric_names`), every knob as a
trial param (so its importance and slice plots work), and every measurement and failure kind as user
attrs. Nothing here writes to the study.
"""

from __future__ import annotations

import errno

from autotune.errors import InputError


def study_page(url: str, study_name: str, host: str, port: int) -> str:
    """The dashboard's address of the study's own page."""
    import optuna

    study_id = optuna.storages.get_storage(url).get_study_id_from_name(study_name)
    return f"http://{host}:{port}/dashboard/studies/{study_id}"


def serve(url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on `url` until interrupted."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise InputError("optuna-dashboard is not installed, though autotune depends on it: reinstall autotune "
                         "(pip install -e .) or pip install 'optuna-dashboard>=0.17'") from None
    try:
        run_server(url, host=host, port=port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use: pick another with --port") from None
        raise
    except KeyboardInterrupt:
        pass
