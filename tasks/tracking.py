"""The one module that talks to MLflow.

Every method takes an explicit run id: MLflow's active run is thread-local and Prefect runs tasks in worker
threads, so nothing here relies on ``mlflow.active_run()`` outside the call that opened it.

Models are logged as ``architecture.json`` + ``weights.pt`` (a ``state_dict``; see :mod:`tasks.surrogate`) in an
MLflow logged model, never as a pickled module, and every load goes through :func:`load_model`, which reads the
weights with ``torch.load(weights_only=True)``. A registered model gets one version per trained model (identified
by the weights' fingerprint) and its aliases move only when the caller asks to ``publish``.
"""

from __future__ import annotations

import atexit
import fcntl
import getpass
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from advdesign.environment import DEFAULT_ARTIFACT_ROOT, PROJECT_ROOT, tracking_uri as default_tracking_uri

import mlflow  # noqa: E402  (after the environment defaults)
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

#: The experiment tag MLflow 3's UI reads to choose its layout; this value opens the model-training view
#: (the other values are ``genai_development``, ``finetuning`` and ``no_inferred_type``).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
#: Tags identifying the process that owns a run, so a later Tracker can tell an orphan from a live run.
PID_TAG, HOST_TAG, PROCESS_START_TAG = "advdesign.pid", "advdesign.hostname", "advdesign.process_start"
KILLED_REASON_TAG = "advdesign.killed_reason"
FINGERPRINT_TAG = "advdesign.fingerprint"
MODEL_URI_TAG, MODEL_VERSION_TAG = "advdesign.model_uri", "advdesign.model_version"
MODEL_NAME_TAG = "advdesign.model_name"
MODEL_TYPE = "advdesign-torch-state-dict"


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or written; raised before any work starts."""


#: The pip package that provides each SQLAlchemy database driver MLflow (or Optuna) may be pointed at.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "pymysql": "pymysql", "mysqldb": "mysqlclient", "pyodbc": "pyodbc",
                   "pymssql": "pymssql"}
#: Database schemes a store URL may use (SQLAlchemy's, optionally ``+driver``), and their default ports.
DATABASE_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def check_database_url(url: str, what: str = "MLflow tracking store", timeout_s: float = 5.0) -> None:
    """A SQLAlchemy database URL (``sqlite:///…``, ``postgresql[+driver]://…``, ``mysql…``, ``mssql…``) in one
    line before any work: its folder exists and is writable (SQLite), its driver is installed (the error names the
    pip package) and its host accepts a connection (a TCP connect with ``timeout_s``, no retries)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if path is None or not str(path) or str(path) == ":memory:":
            return
        if not path.parent.is_dir():
            raise TrackingUnavailable(f"{what} {url}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise TrackingUnavailable(f"{what} {url}: {path if path.exists() else path.parent} is not writable")
        return
    dialect = scheme.split("+", 1)[0]
    if dialect not in DATABASE_PORTS:
        raise TrackingUnavailable(f"{what} {url!r}: unsupported scheme {scheme or '(none)'!r}; use sqlite:///PATH, "
                                  "http(s)://HOST or postgresql://USER@HOST/DB")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect_class = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise TrackingUnavailable(f"{what} {url!r}: {_first_line(exc)}") from None
    try:
        dialect_class.import_dbapi()
    except ImportError as exc:
        module = (getattr(exc, "name", None) or dialect_class.driver or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module.lower(), module)
        raise TrackingUnavailable(f"{what} {parsed.render_as_string(hide_password=True)}: the database driver "
                                  f"{module!r} is not installed (pip install '{package}')") from None
    shown = parsed.render_as_string(hide_password=True)
    host, port = parsed.host or "localhost", parsed.port or DATABASE_PORTS[dialect]
    if not (parsed.query.get("host") or host.startswith("/")):  # a Unix socket: only the driver can try it
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            raise TrackingUnavailable(f"{what} {shown}: database server {host}:{port} is unreachable "
                                      f"({exc.strerror or exc})") from None
    _connect_once(parsed, shown, what, timeout_s)


#: The DBAPI's keyword for a connection timeout in seconds, per SQLAlchemy driver name.
_CONNECT_TIMEOUT_ARG = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pg8000": "timeout",
                        "pymysql": "connect_timeout", "mysqldb": "connect_timeout", "pymssql": "login_timeout"}


def _connect_once(parsed: Any, shown: str, what: str, timeout_s: float) -> None:
    """One real connection, no retries: a port where something other than the database answers, a refused login
    or a database that does not exist fails here in one line, not after MLflow's minutes of retries (and a
    traceback)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    argument = _CONNECT_TIMEOUT_ARG.get(parsed.get_dialect().driver)
    connect_args = {argument: max(1, int(math.ceil(timeout_s)))} if argument else {}
    try:
        engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise TrackingUnavailable(f"{what} {shown}: cannot connect: {reason}"[:400]) from None


def _http_unreachable(uri: str, timeout_s: float) -> str | None:
    """Why nothing accepts a connection at ``uri``'s host and port (a refused or unroutable port fails in at most
    ``timeout_s``), or ``None`` when something does, or a proxy stands between (it will say)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return None
    try:
        socket.create_connection((host, parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    return None


def check_reachable(uri: str, timeout_s: float = 5.0, answer_timeout_s: float = 60.0) -> None:
    """Fail fast, in one line, when ``uri`` cannot be used: a server that does not answer, a SQLite folder that
    is missing or read-only, a database URL without its driver or its server, a scheme MLflow does not take.

    A tracking server's port is tried first (a refused or unroutable port fails within ``timeout_s``); one that
    accepts then has ``answer_timeout_s`` to answer its health check: a loaded server (eight campaigns starting at
    once on two cores) is slow, not gone."""
    if uri.startswith(("http://", "https://")):
        reason = _http_unreachable(uri, timeout_s)
        if reason is None:
            try:
                with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=answer_timeout_s) as response:
                    response.read()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = str(exc) if not isinstance(exc, TimeoutError) else f"no answer in {answer_timeout_s:g} s"
        if reason is not None:
            raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable: {reason}") from None
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingUnavailable(f"MLflow tracking URI {uri!r}: use sqlite:///PATH or http(s)://HOST (the file store is retired)")
    elif uri.startswith(("databricks", "uc:")):
        return
    else:
        check_database_url(uri, timeout_s=timeout_s)


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database file (``mlartifacts/``), so a store in a temporary
    folder keeps its artifacts there too; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACT_ROOT.name).as_uri()


def _finite(value: float) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _first_line(exc: BaseException) -> str:
    """The exception's first line (one that ends in a colon takes the next line with it)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


# -- the store: its schema created or migrated once, under a file lock ---------------------------------------------
_READY_STORES: set[str] = set()
_READY_LOCK = threading.Lock()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path`` (created if missing), across processes on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _store_lock_path(uri: str, purpose: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return db.with_name(f"{db.name}.{purpose}.lock")


@contextmanager
def _store_lock(uri: str, purpose: str) -> Iterator[None]:
    """A file lock beside a SQLite store; nothing for a server, which serialises its own writes."""
    path = _store_lock_path(uri, purpose)
    if path is None:
        yield
        return
    with _file_lock(path):
        yield


def prepare_store(uri: str) -> None:
    """Create or migrate a SQLite store's schema once per process, holding ``<db>.schema.lock``: processes that
    start together on a fresh store would otherwise race MLflow's table creation and Alembic migrations."""
    if not uri.startswith("sqlite:///"):
        return
    with _READY_LOCK:
        if uri in _READY_STORES:
            return
        with _store_lock(uri, "schema"):
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # tracking tables, migrations, the default experiment
            client.search_registered_models(max_results=1)  # the registry's tables (same database)
        _READY_STORES.add(uri)


def _get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it tagged for the model-training UI; another process creating it between
    our get and our create (``RESOURCE_ALREADY_EXISTS``) is not an error."""
    existing = client.get_experiment_by_name(name)
    if existing is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = client.get_experiment_by_name(name)
            if existing is None:
                raise
    if EXPERIMENT_KIND_TAG not in existing.tags:
        client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return existing.experiment_id


# -- who runs: source, user, commit, process -----------------------------------------------------------------------
_SOURCE_TAGS: dict[str, str] | None = None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def source_tags() -> dict[str, str]:
    """``mlflow.source.name`` (the command), ``mlflow.source.type``, ``mlflow.user`` and, in a git checkout,
    ``mlflow.source.git.commit``: what MLflow's fluent API adds and ``MlflowClient.create_run`` does not."""
    global _SOURCE_TAGS
    if _SOURCE_TAGS is None:
        argv = [a for a in sys.argv if a]
        command = " ".join([Path(argv[0]).name, *argv[1:2]]) if argv else "python"
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = os.environ.get("USER", "unknown")
        tags = {MLFLOW_SOURCE_NAME: command, MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: user}
        if commit := _git_commit():
            tags[MLFLOW_GIT_COMMIT] = commit
        _SOURCE_TAGS = tags
    return dict(_SOURCE_TAGS)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc, or ``None`` where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def process_tags() -> dict[str, str]:
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    if stat := _proc_stat(os.getpid()):
        tags[PROCESS_START_TAG] = stat[1]
    return tags


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host still runs and is the process that recorded ``started`` (pids are reused)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    stat = _proc_stat(pid)
    if stat is not None and (stat[0] == "Z" or (started is not None and stat[1] != started)):
        return False  # a zombie, or another process that got the same pid
    return True


# -- runs left open: interrupts and process exit --------------------------------------------------------------------
_OPEN_RUNS: dict[str, MlflowClient] = {}
#: Logged models this process has created and not yet finalized (PENDING while their files upload).
_PENDING_MODELS: dict[str, MlflowClient] = {}
_RUNS_LOCK = threading.Lock()


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM (where nothing else handles it) so open runs unwind as KILLED."""


def _on_sigterm(signum: int, frame: Any) -> None:
    with _RUNS_LOCK:
        open_runs = bool(_OPEN_RUNS)
    if not open_runs:  # nothing to end: die as the default action would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated(128 + signum)


def _sigterm_handler(install: bool) -> None:
    """While runs are open, turn SIGTERM into :class:`Terminated` (so ``finally`` blocks end the runs KILLED)
    where it would otherwise kill the process on the spot; restore the default when none is open. A handler
    someone else installed (Prefect's flow engine raises its ``TerminationSignal``) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if install and current == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        elif not install and current is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


def _interrupt_reason() -> str | None:
    """Why the process is being interrupted, if an interrupt is propagating right now (else ``None``)."""
    exc = sys.exc_info()[1]
    if exc is None:
        return None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, Terminated) or type(exc).__name__ == "TerminationSignal":
        return "terminated (SIGTERM)"
    if isinstance(exc, SystemExit):
        return f"process exiting (status {exc.code})"
    return None


def _fail_model(client: MlflowClient, model_id: str, reason: str) -> None:
    client.set_logged_model_tags(model_id, {KILLED_REASON_TAG: reason})
    client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)


def kill_open_runs(reason: str) -> int:
    """Mark every run this process still has open KILLED with ``reason``, and every logged model it was still
    writing (PENDING) FAILED; the number of runs marked."""
    # A signal handler may call this while the interrupted main thread holds the lock: wait briefly, not forever.
    if not _RUNS_LOCK.acquire(timeout=2):
        return 0
    try:
        runs = list(_OPEN_RUNS.items())
        _OPEN_RUNS.clear()
        models = list(_PENDING_MODELS.items())
        _PENDING_MODELS.clear()
    finally:
        _RUNS_LOCK.release()
    for model_id, client in models:
        try:
            _fail_model(client, model_id, reason)
        except Exception:  # noqa: BLE001 — best effort at exit; the next Tracker fails it with its run
            pass
    marked = 0
    for run_id, client in runs:
        try:
            client.set_tag(run_id, KILLED_REASON_TAG, reason)
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
            marked += 1
        except Exception:  # noqa: BLE001 — best effort at exit; the next Tracker reaps it as an orphan
            pass
    return marked


atexit.register(kill_open_runs, "process exited with the run open")


class Tracker:
    """An MLflow experiment in one tracking store.

    On start-up the store's schema is prepared once under a file lock, the experiment is fetched or created
    (tolerating a concurrent creator) and tagged for the model-training UI, and runs of this experiment left
    RUNNING by a dead process on this host are marked KILLED.

    Args:
        uri: tracking URI; defaults to ``MLFLOW_TRACKING_URI`` or the project's SQLite store.
        experiment: experiment name, created on first use (artifacts under the project's ``mlartifacts/``
            when the store is local).
    """

    def __init__(self, uri: str | None = None, experiment: str = "advdesign") -> None:
        self.uri = default_tracking_uri(uri)
        check_reachable(self.uri)
        prepare_store(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        self.experiment_id = _get_or_create_experiment(self.client, experiment, local_artifact_root(self.uri))
        self.reap_orphans()

    # -- runs ---------------------------------------------------------------------------------------------------
    def reap_orphans(self) -> list[str]:
        """Mark KILLED (with a reason tag) this experiment's RUNNING runs whose process, on this host, is gone."""
        host = socket.gethostname()
        runs = self.client.search_runs(
            [self.experiment_id], f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'", max_results=5000)
        killed = []
        for run in runs:
            tags = run.data.tags
            try:
                pid = int(tags[PID_TAG])
            except (KeyError, ValueError):
                continue
            if process_alive(pid, tags.get(PROCESS_START_TAG)):
                continue
            reason = f"orphaned: process {pid} on {host} ended with the run still RUNNING"
            self.client.set_tag(run.info.run_id, KILLED_REASON_TAG, reason)
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            self._fail_pending_models([run.info.run_id], reason)
            killed.append(run.info.run_id)
        return killed

    def _fail_pending_models(self, run_ids: list[str], reason: str) -> list[str]:
        """Logged models the killed runs left PENDING (the process died while writing them) become FAILED, with
        the reason as a tag; their ids. Looked up by source run (however many models the experiment holds)."""
        failed = []
        for start in range(0, len(run_ids), 50):
            quoted = ", ".join(f"'{run_id}'" for run_id in run_ids[start:start + 50])
            try:
                models = self.client.search_logged_models([self.experiment_id],
                                                          filter_string=f"source_run_id IN ({quoted})")
            except MlflowException:
                return failed
            for model in models:
                if model.status == LoggedModelStatus.PENDING:
                    _fail_model(self.client, model.model_id, reason)
                    failed.append(model.model_id)
        return failed

    def start_run(
        self, name: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        all_tags = {**source_tags(), **process_tags(), **dict(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        with _RUNS_LOCK:
            _OPEN_RUNS[run.info.run_id] = self.client
        _sigterm_handler(install=True)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def end_run(self, run_id: str, failed: bool = False) -> None:
        """FINISHED, or FAILED; KILLED (with the reason as a tag) when called while an interrupt (Ctrl-C,
        SIGTERM) unwinds the process, e.g. from a ``finally`` block."""
        with _RUNS_LOCK:
            _OPEN_RUNS.pop(run_id, None)
            none_open = not _OPEN_RUNS
        if none_open:
            _sigterm_handler(install=False)
        reason = _interrupt_reason()
        if reason:
            self.client.set_tag(run_id, KILLED_REASON_TAG, reason)
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED if failed else RunStatus.FINISHED
        self.client.set_terminated(run_id, status=RunStatus.to_string(status))

    @contextmanager
    def run(self, name: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
            tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """A run that is marked FAILED (with the error as a tag) if the block raises, KILLED if it is interrupted,
        FINISHED otherwise."""
        run_id = self.start_run(name, parent_run_id, params, tags)
        try:
            yield run_id
        except BaseException as exc:
            if _interrupt_reason() is None:
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
    def log_datasets(self, run_id: str, datasets: Mapping[str, Mapping[str, Any]], digest: str, source: str) -> None:
        """The run's inputs in MLflow's Datasets panel: ``datasets`` maps a context (``training``, ``validation``,
        ``unlabelled``) to a profile (``{"num_rows": …, "shape": …}``); ``digest``: the data's fingerprint (the same
        for all contexts of one data set), ``source``: where it came from (``oracle-labelled molecule samples``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(name=f"{digest}-{context}", digest=digest[:36], source_type="code",
                                       source=json.dumps({"description": source}),
                                       profile=json.dumps(dict(profile), default=str)),
                               tags=[InputTag("mlflow.data.context", context)])
                  for context, profile in datasets.items()]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

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
        publish: bool = False,
        fingerprint: str | None = None,
        description: str | None = None,
    ) -> str:
        """Log a torch module as ``architecture.json`` + ``weights.pt`` (no pickle) in an MLflow logged model of
        ``run_id``; with ``registered_name``, register it and return its versioned URI ``models:/NAME/N``.

        One registered version per trained model: when a version of ``registered_name`` already carries the same
        fingerprint (by default, of the architecture and every weight; a cached re-run trains nothing new), no
        model is logged or registered again and that version's URI is returned. ``alias`` is pointed at the
        version only when ``publish`` is true: quick and test runs never move what others load by alias.
        Without ``registered_name`` the logged model's URI (``models:/m-…``) is returned.
        """
        import torch

        from tasks.surrogate import fingerprint as model_fingerprint, save_model

        was_training = model.training
        model.eval()
        with torch.no_grad():
            output = model(torch.as_tensor(input_example))
        model.train(was_training)
        fp = fingerprint or model_fingerprint(model)
        if registered_name:
            with _store_lock(self.uri, "registry"):  # two processes registering the same model: one version
                existing = self._version_with_fingerprint(registered_name, fp)
                if existing is None:
                    model_id = self._log_model_files(run_id, model, name, fp, input_example, output, save_model)
                    version = self._register(registered_name, model_id, run_id, fp, description)
                else:
                    version = existing
                    self._link_model(run_id, version_model_id(version))
            number = str(version.version)
            if publish and alias:
                self.client.set_registered_model_alias(registered_name, alias, number)
            model_uri = f"models:/{registered_name}/{number}"
            self.set_tags(run_id, {MODEL_URI_TAG: model_uri, MODEL_NAME_TAG: registered_name,
                                   MODEL_VERSION_TAG: number, "advdesign.model_reused": existing is not None})
            return model_uri
        model_id = self._log_model_files(run_id, model, name, fp, input_example, output, save_model)
        return f"models:/{model_id}"

    def _log_model_files(self, run_id: str, model: "Any", name: str, fp: str, input_example: np.ndarray,
                         output: "Any", save_model: "Any") -> str:
        logged = self.client.create_logged_model(
            self.experiment_id, name=name, source_run_id=run_id, model_type=MODEL_TYPE,
            tags={FINGERPRINT_TAG: fp},
            params={"input_shape": str(list(np.shape(input_example))[1:]), "output_shape": str(list(output.shape)[1:]),
                    "module": type(model).__name__})
        with _RUNS_LOCK:
            _PENDING_MODELS[logged.model_id] = self.client
        try:
            with tempfile.TemporaryDirectory() as tmp:
                save_model(model, tmp)
                self.client.log_model_artifacts(logged.model_id, tmp)
        except BaseException as exc:
            _fail_model(self.client, logged.model_id, _interrupt_reason() or _first_line(exc))
            raise
        finally:
            with _RUNS_LOCK:
                _PENDING_MODELS.pop(logged.model_id, None)
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        self._link_model(run_id, logged.model_id)
        return logged.model_id

    def _link_model(self, run_id: str, model_id: str | None) -> None:
        """The model as an output of the run (the UI's "Logged models" of the run)."""
        if model_id:
            self.client.log_outputs(run_id, [LoggedModelOutput(model_id, 0)])

    def _version_with_fingerprint(self, registered_name: str, fp: str) -> "Any":
        try:
            versions = self.client.search_model_versions(f"name = '{registered_name}'")
        except MlflowException:
            return None
        matching = [v for v in versions if v.tags.get(FINGERPRINT_TAG) == fp]
        return min(matching, key=lambda v: int(v.version)) if matching else None

    def _register(self, registered_name: str, model_id: str, run_id: str, fp: str, description: str | None) -> "Any":
        description = description or default_model_description(registered_name)
        try:
            self.client.create_registered_model(registered_name, description=description)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if not self.client.get_registered_model(registered_name).description:
                self.client.update_registered_model(registered_name, description=description)
        return self.client.create_model_version(
            registered_name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id,
            tags={FINGERPRINT_TAG: fp}, description=f"trained in run {run_id}; weights fingerprint {fp[:16]}")

    def log_model_used(self, run_id: str, model_uri: str) -> str:
        """Tag ``run_id`` with the exact model it used (``models:/NAME/N``, never an alias); returns that URI."""
        info = describe_model(self.client, model_uri)
        tags = {MODEL_URI_TAG: info["uri"]}
        if info.get("name"):
            tags.update({MODEL_NAME_TAG: info["name"], MODEL_VERSION_TAG: info["version"]})
        self.set_tags(run_id, tags)
        return info["uri"]


def version_model_id(version: "Any") -> str:
    """The logged model behind a registered version (the SQLite store leaves ``model_id`` empty; the source
    ``models:/m-…`` names it)."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else ""


def default_model_description(registered_name: str) -> str:
    what = "Surrogate regressor of the design oracle's score" if "surrogate" in registered_name else "Torch model"
    return (f"{what}, logged by advdesign as architecture.json (allow-listed layer types) + weights.pt (a state_dict "
            "read with torch.load(weights_only=True); no pickle). Load a version with "
            f"tasks.tracking.load_model('models:/{registered_name}/N'). One version per trained model (tag "
            f"{FINGERPRINT_TAG}); aliases name the defense and move only when a run publishes.")


# -- loading: the one path every model load takes --------------------------------------------------------------------
def _client(uri: str | None) -> tuple[str, MlflowClient]:
    resolved = default_tracking_uri(uri)
    check_reachable(resolved)
    prepare_store(resolved)
    mlflow.set_tracking_uri(resolved)
    return resolved, MlflowClient(resolved)


def describe_model(client: MlflowClient, model_uri: str) -> dict[str, str]:
    """``{"uri", "name", "version", "model_id"}`` of an existing model: an alias resolved to its version now, so
    the URI is the versioned ``models:/NAME/N``; ``ValueError`` (one line) when nothing exists there."""
    try:
        if model_uri.startswith("models:/"):
            rest = model_uri.removeprefix("models:/").strip("/")
            if "@" in rest:
                name, alias = rest.split("@", 1)
                version = client.get_model_version_by_alias(name, alias)
            elif "/" in rest:
                name, number = rest.rsplit("/", 1)
                if number == "latest":
                    versions = client.search_model_versions(f"name = '{name}'")
                    if not versions:
                        raise ValueError(f"registered model {name!r} has no versions")
                    version = max(versions, key=lambda v: int(v.version))
                else:
                    version = client.get_model_version(name, number)
            else:  # a logged model's id, models:/m-…
                logged = client.get_logged_model(rest)
                return {"uri": model_uri, "name": "", "version": "", "model_id": logged.model_id}
            return {"uri": f"models:/{version.name}/{version.version}", "name": version.name,
                    "version": str(version.version), "model_id": version_model_id(version)}
        if model_uri.startswith("runs:/"):
            client.get_run(model_uri.removeprefix("runs:/").split("/", 1)[0])
        return {"uri": model_uri, "name": "", "version": "", "model_id": ""}
    except MlflowException as exc:
        raise ValueError(f"cannot load model {model_uri!r} from {client.tracking_uri}: {_first_line(exc)}") from None


def resolve_model_uri(model_uri: str, uri: str | None = None) -> str:
    """The versioned URI (``models:/NAME/N``) an alias points at now; other URIs unchanged."""
    _, client = _client(uri)
    return describe_model(client, model_uri)["uri"]


def check_model_exists(model_uri: str, uri: str | None = None) -> None:
    """Raise ``ValueError`` in one line unless ``model_uri`` names a model :func:`load_model` loads (it is loaded
    and dropped: a missing, pickled or tampered model fails here, before any flow starts)."""
    load_model(model_uri, uri)


def load_model(model_uri: str, uri: str | None = None) -> "Any":
    """Load a torch module logged by :meth:`Tracker.log_model` (``models:/NAME/N``, ``models:/NAME@ALIAS``,
    ``models:/m-…``, ``runs:/ID/NAME``): the architecture from JSON, the weights with
    ``torch.load(weights_only=True)``. Anything else — a pickled module, a crafted pickle in place of the weights,
    an architecture naming a type off the allow-list — is a one-line ``ValueError`` and no code of it runs."""
    from tasks.surrogate import ARCHITECTURE_FILE, WEIGHTS_FILE, UnsafeModelFile, load_saved_model

    resolved, client = _client(uri)
    info = describe_model(client, model_uri)  # an alias is read once: the version reported is the one loaded
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=info["uri"], dst_path=tmp, tracking_uri=resolved)
        except (MlflowException, OSError) as exc:
            raise ValueError(f"cannot load model {model_uri!r} from {resolved}: {_first_line(exc)}") from None
        try:
            return load_saved_model(local)
        except FileNotFoundError:
            raise ValueError(f"cannot load model {model_uri!r}: it holds no {ARCHITECTURE_FILE} + {WEIGHTS_FILE} "
                             "(models saved as pickles are not loaded)") from None
        except UnsafeModelFile as exc:
            raise ValueError(f"cannot load model {model_uri!r}: {exc}") from None


# -- parameters: only those that apply to the run ------------------------------------------------------------------
#: Training settings only some defenses read, by field name (in a ``defense.``, ``surrogate.`` or ``data.`` section or
#: unqualified): a run logs them only when one of its defenses reads them (no VAT radius on a plain run).
DEFENSE_SETTINGS: dict[str, tuple[str, ...]] = {
    "eps": ("fgsm", "pgd", "trades"), "fgsm_mix": ("fgsm",), "pgd_steps": ("pgd", "trades"),
    "vat_eps": ("vat",), "vat_weight": ("vat",), "vat_xi": ("vat",), "vat_power_iterations": ("vat",),
    "n_unlabelled": ("vat",), "trades_beta": ("trades",),
    "coms_alpha": ("coms",), "coms_limit": ("coms",), "coms_alpha_lr": ("coms",), "coms_steps": ("coms",),
    "coms_step_size": ("coms",),
}


def applicable_params(params: Mapping[str, Any], defenses: str | Any) -> dict[str, Any]:
    """``params`` without the defense settings none of ``defenses`` (a name or several) reads."""
    chosen = {defenses} if isinstance(defenses, str) else {str(getattr(d, "value", d)) for d in defenses}
    out = {}
    for key, value in params.items():
        section, _, field = str(key).rpartition(".")
        if section in ("", "defense", "surrogate", "data") and field in DEFENSE_SETTINGS \
                and not chosen & set(DEFENSE_SETTINGS[field]):
            continue
        out[key] = value
    return out


# -- reading back what a campaign logged -------------------------------------------------------------------------
def design_tables(run_id: str, uri: str | None = None) -> dict[str, "Any"]:
    """The verified-design tables (``designs.csv``, pandas) under an MLflow run, by defense (the run's ``defense``
    tag, else its name), in the order the runs started: a campaign's parent run gives one per defense run, a
    defense run its own; a run with ``--rounds`` holds them in nested round runs, which are concatenated. Each
    table's ``attrs["designer"]`` holds the campaign's designer settings (``{"name": "car", "objective": …}``, the
    ``designer.*`` parameters of the run or its nearest ancestor; empty if none were logged).
    ``ValueError`` in one line for a missing store or run, or a run without any such table."""
    import pandas as pd

    resolved = default_tracking_uri(uri)
    if resolved.startswith("sqlite:///") and not Path(resolved.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no MLflow store at {resolved}")
    resolved, client = _client(resolved)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no MLflow run {run_id!r} in {resolved}") from None

    def children(parent: str) -> list:
        return client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"])

    def tables_of(one: Any) -> list:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return [pd.read_csv(client.download_artifacts(one.info.run_id, "designs.csv", tmp))]
            except (MlflowException, OSError):
                pass
        return [table for child in children(one.info.run_id) for table in tables_of(child)]

    def designer_of(one: Any) -> dict[str, str]:
        """The ``designer.*`` parameters of the run or its nearest ancestor that logged them (the campaign's)."""
        for _ in range(4):
            found = {k.removeprefix("designer."): v for k, v in one.data.params.items() if k.startswith("designer.")}
            parent = one.data.tags.get("mlflow.parentRunId")
            if found or not parent:
                return found
            one = client.get_run(parent)
        return {}

    runs = children(run_id) if run.data.tags.get("kind") == "campaign" else [run]
    out: dict[str, Any] = {}
    for one in runs:
        tables = tables_of(one)
        if tables:
            table = pd.concat(tables, ignore_index=True)
            table.attrs["designer"] = designer_of(one)
            out[one.data.tags.get("defense", one.info.run_name)] = table
    if not out:
        raise ValueError(f"MLflow run {run_id} holds no designs table (designs.csv), nor do its nested runs")
    return out
