"""Embedded defaults: Prefect's ephemeral API and an MLflow SQLite store, both inside the project folder.

Imported before Prefect or MLflow are, by the CLI, the flows and the tests. Every value is a default only:
anything already set in the environment wins.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("ADVDESIGN_HOME", Path(__file__).resolve().parents[1]))
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
DEFAULT_ARTIFACT_ROOT = PROJECT_ROOT / "mlartifacts"

_DEFAULTS = {
    "PREFECT_HOME": str(PROJECT_ROOT / ".prefect"),
    # Analytics off: with it on, the ephemeral server's SQLite logs "database is locked" tracebacks.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # Models are state_dicts read with torch.load(weights_only=True) (tasks.tracking.load_model); nothing here
    # unpickles a model, and this keeps MLflow's own flavors from doing it either.
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DO_NOT_TRACK": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}

for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)


def tracking_uri(override: str | None = None) -> str:
    """The MLflow tracking URI: the argument, else ``MLFLOW_TRACKING_URI``, else the project's SQLite store."""
    return override or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def start_local_prefect_api() -> str | None:
    """Start this process's local (ephemeral) Prefect API now, one process at a time per ``PREFECT_HOME``; its URL,
    or None where a Prefect server is configured (``PREFECT_API_URL``) or ephemeral mode is off.

    Without a server every process starts an API of its own on ``PREFECT_HOME``'s SQLite database. Started at once
    on a fresh home they migrate that database together and, on a loaded machine, miss the start-up timeout; under a
    file lock in ``PREFECT_HOME`` they start one after another (each gets the whole timeout for its own start) and
    then work side by side. Prefect keeps one ephemeral server per process, so the flows reuse this one.
    """
    import fcntl

    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running:
        return server.api_url
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "ephemeral-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server.start()
    return server.api_url
