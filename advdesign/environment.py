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
