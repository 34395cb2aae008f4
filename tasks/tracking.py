"""The one module that talks to MLflow.

Every method takes an explicit run id: MLflow's active run is thread-local and Prefect runs tasks in worker
threads, so nothing here relies on ``mlflow.active_run()`` outside the call that opened it.
"""

from __future__ import annotations

import json
import math
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from advdesign.environment import DEFAULT_ARTIFACT_ROOT, tracking_uri as default_tracking_uri

import mlflow  # noqa: E402  (after the environment defaults)
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

# Without an explicit list MLflow spends ~8 s resolving the environment on every log_model.
MODEL_PIP_REQUIREMENTS = ["torch==2.13.0", "numpy"]


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or written; raised before any work starts."""


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when ``uri`` cannot be used."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable: {exc}") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise TrackingUnavailable(f"MLflow tracking store {uri}: folder {folder} does not exist")
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingUnavailable(f"MLflow tracking URI {uri!r}: use sqlite:///PATH or http(s)://HOST (the file store is retired)")


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database file (``mlartifacts/``), so a store in a temporary
    folder keeps its artifacts there too; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACT_ROOT.name).as_uri()


def _finite(value: float) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


class Tracker:
    """An MLflow experiment in one tracking store.

    Args:
        uri: tracking URI; defaults to ``MLFLOW_TRACKING_URI`` or the project's SQLite store.
        experiment: experiment name, created on first use (artifacts under the project's ``mlartifacts/``
            when the store is local).
    """

    def __init__(self, uri: str | None = None, experiment: str = "advdesign") -> None:
        self.uri = default_tracking_uri(uri)
        check_reachable(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        existing = self.client.get_experiment_by_name(experiment)
        if existing is not None:
            self.experiment_id = existing.experiment_id
        else:
            location = local_artifact_root(self.uri)
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    # -- runs ---------------------------------------------------------------------------------------------------
    def start_run(
        self, name: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def end_run(self, run_id: str, failed: bool = False) -> None:
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.client.set_terminated(run_id, status=status)

    @contextmanager
    def run(self, name: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
            tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """A run that is marked FAILED (with the error as a tag) if the block raises, FINISHED otherwise."""
        run_id = self.start_run(name, parent_run_id, params, tags)
        try:
            yield run_id
        except BaseException as exc:
            self.client.set_tag(run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
            self.end_run(run_id, failed=True)
            raise
        self.end_run(run_id)

    def run_url(self, run_id: str) -> str:
        return f"{self.uri} · experiment {self.experiment_id} · run {run_id}"

    # -- values -------------------------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, params=[Param(str(k), str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log finite metrics; non-finite ones are logged as tags so they are visible, not silently dropped."""
        timestamp = mlflow.utils.time.get_current_time_millis()
        good = [Metric(k, float(v), timestamp, step) for k, v in metrics.items() if _finite(v)]
        for i in range(0, len(good), 1000):
            self.client.log_batch(run_id, metrics=good[i : i + 1000])
        for k, v in metrics.items():
            if not _finite(v):
                self.client.set_tag(run_id, f"nonfinite_metric.{k}", str(v))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    # -- artifacts ----------------------------------------------------------------------------------------------
    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_table(self, run_id: str, table: "Any", artifact_file: str) -> None:
        """A pandas DataFrame as an MLflow table (shown in the UI's artifact view) and as CSV beside it."""
        self.client.log_table(run_id, data=table, artifact_file=artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / (Path(artifact_file).stem + ".csv")
            table.to_csv(csv, index=False)
            self.client.log_artifact(run_id, str(csv), str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(json.dumps(data, indent=2, default=str))
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)

    def log_figure(self, run_id: str, figure: "Any", artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def artifact_uri(self, run_id: str, artifact_path: str = "") -> str:
        base = self.client.get_run(run_id).info.artifact_uri
        return f"{base}/{artifact_path}" if artifact_path else base

    # -- models -------------------------------------------------------------------------------------------------
    def log_model(
        self,
        run_id: str,
        model: "Any",
        name: str,
        input_example: np.ndarray,
        registered_name: str | None = None,
        alias: str | None = None,
    ) -> str:
        """Log a torch module (pickle format, so loading returns the ``nn.Module``) with its signature; if
        ``registered_name`` is given, register a new version and point ``alias`` at it. Returns the model URI
        (``models:/NAME@ALIAS`` when registered with an alias, else the logged model's URI)."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = model(torch.as_tensor(input_example)).cpu().numpy()
        model.train(was_training)
        signature = infer_signature(input_example, output)
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pytorch.log_model(
                model,
                name=name,
                signature=signature,
                serialization_format="pickle",
                pip_requirements=MODEL_PIP_REQUIREMENTS,
                registered_model_name=registered_name,
            )
        if registered_name and alias and info.registered_model_version is not None:
            self.client.set_registered_model_alias(registered_name, alias, str(info.registered_model_version))
            return f"models:/{registered_name}@{alias}"
        return info.model_uri


def check_model_exists(model_uri: str, uri: str | None = None) -> None:
    """Raise ``ValueError`` in one line unless ``model_uri`` resolves to a logged model (reads only its MLmodel)."""
    from mlflow.models import get_model_info

    resolved = default_tracking_uri(uri)
    check_reachable(resolved)
    mlflow.set_tracking_uri(resolved)
    try:
        get_model_info(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise ValueError(f"cannot load model {model_uri!r} from {resolved}: {str(exc).splitlines()[0]}") from None


def load_model(model_uri: str, uri: str | None = None) -> "Any":
    """Load a torch module logged by :meth:`Tracker.log_model` (run, logged-model or registry URI)."""
    import mlflow.pytorch

    resolved = default_tracking_uri(uri)
    check_reachable(resolved)
    mlflow.set_tracking_uri(resolved)
    try:
        return mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except mlflow.exceptions.MlflowException as exc:
        raise ValueError(f"cannot load model {model_uri!r} from {resolved}: {str(exc).splitlines()[0]}") from None
