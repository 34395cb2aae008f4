"""Real servers, not the embedded defaults (issue 16, part 5): PostgreSQL (Debian's package), an MLflow tracking
server on it, a Prefect server, and a Dask scheduler with two worker processes on loopback, each started here as
its own process. Two small campaigns run at once against them, one on the Dask cluster: no run is lost, each JSON
names its own versioned model, and both labelled the same data (the oracle's labels agree across the runners).

Slow (``make test-slow``, ~3-5 min on 2 cores). Skipped when PostgreSQL's ``initdb`` or ``psycopg`` is missing;
CI's machine has both (Debian's postgresql package and ``.[dev]``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: Debian's PostgreSQL programs (initdb, pg_ctl) live in a versioned folder, off PATH.
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
             else 0, default=Path("/usr/lib/postgresql/15/bin"))
TINY = ["--quick", "--n-labelled", "300", "--n-unlabelled", "100", "--n-pool", "60", "--n-seeds", "4", "--epochs", "2",
        "--steps", "10", "--budget", "16", "--calls-per-seed", "4", "--oracle-batch-size", "150"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url}: no answer in {timeout_s} s: {log.read_text()[-2000:]}")


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"port {port}: process exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"port {port}: nothing listening in {timeout_s} s")


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as Debian's postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private to root, and PostgreSQL runs as its own user.
    path = Path(tempfile.mkdtemp(prefix="advdesign-servers-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(folder) -> Iterator[str]:
    if not (PG_BIN / "initdb").exists() and not shutil.which("initdb"):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    bin_dir = PG_BIN if (PG_BIN / "initdb").exists() else Path(shutil.which("initdb")).parent
    data, log, port = folder / "pg", folder / "pg.log", _free_port()
    data.mkdir()
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(log, "postgres", "postgres")
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync"]), check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o",
                                 f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off "
                                 "-c max_connections=200", "start"]), check=True, capture_output=True, timeout=180)
    try:
        subprocess.run([shutil.which("psql") or str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "-c", "CREATE DATABASE mlflow"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True, timeout=120)


def _start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def servers(folder, postgres) -> Iterator[dict[str, str]]:
    """MLflow on PostgreSQL, a Prefect server, a Dask scheduler and two workers; their addresses."""
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    mlflow_port, prefect_port, dask_port = _free_port(), _free_port(), _free_port()
    processes = []
    try:
        processes.append(_start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
                                 "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                                 "--port", str(mlflow_port), "--workers", "2"], folder / "mlflow.log", env))
        processes.append(_start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                 str(prefect_port)], folder / "prefect.log", env))
        processes.append(_start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(dask_port),
                                 "--no-dashboard"], folder / "scheduler.log", env))
        _wait_for_port(dask_port, processes[-1], folder / "scheduler.log")
        for i in range(2):
            processes.append(_start([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{dask_port}", "--nthreads", "1",
                                     "--nworkers", "1", "--no-dashboard", "--name", f"w{i}"],
                                    folder / f"worker{i}.log", {**env, "PREFECT_API_URL":
                                                                f"http://127.0.0.1:{prefect_port}/api"}))
        _wait_for(f"http://127.0.0.1:{mlflow_port}/health", processes[0], folder / "mlflow.log")
        _wait_for(f"http://127.0.0.1:{prefect_port}/api/health", processes[1], folder / "prefect.log")
        yield {"mlflow": f"http://127.0.0.1:{mlflow_port}", "prefect": f"http://127.0.0.1:{prefect_port}/api",
               "dask": f"tcp://127.0.0.1:{dask_port}", "home": str(folder / "prefect")}
    finally:
        for process in reversed(processes):
            _stop(process)


def _model_source_runs(tracking_uri: str, model_uri: str) -> set[str]:
    from mlflow import MlflowClient

    name, version = model_uri.removeprefix("models:/").rsplit("/", 1)
    found = MlflowClient(tracking_uri).get_model_version(name, version)
    return {found.run_id} if found.run_id else set()


def _flow_runs(api: str) -> list[dict]:
    request = urllib.request.Request(f"{api}/flow_runs/filter", data=json.dumps({"limit": 50}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_two_campaigns_at_once_on_postgres_mlflow_prefect_and_dask_servers(servers, folder):
    env = {**os.environ, "PREFECT_API_URL": servers["prefect"], "PREFECT_HOME": servers["home"],
           "MLFLOW_TRACKING_URI": servers["mlflow"]}
    # The same data seed (so the same designs to label) but one more epoch on the Dask run: two different models.
    # (Identical models would share one registered version by design: a version per trained model.)
    runs = {"threads": [], "dask": ["--task-runner", "dask", "--dask-address", servers["dask"], "--epochs", "3"]}
    processes = {}
    for name, extra in runs.items():
        command = [str(BIN / "advdesign"), "campaign", *TINY, "--defenses", "none", "--experiment", "real-servers",
                   "--json", str(folder / f"{name}.json"), *extra]
        processes[name] = _start(command, folder / f"{name}.log", env)
    for name, process in processes.items():
        code = process.wait(timeout=1500)
        assert code == 0, (folder / f"{name}.log").read_text()[-3000:]

    summaries = {name: json.loads((folder / f"{name}.json").read_text()) for name in runs}
    uris = {name: s["defenses"]["none"]["model_uri"] for name, s in summaries.items()}
    assert all(re.fullmatch(r"models:/[\w.-]+/\d+", uri) for uri in uris.values()), uris  # a version, not an alias
    assert len(set(uris.values())) == 2, uris  # each its own model
    for name, summary in summaries.items():  # ... logged by its own run
        assert summary["defenses"]["none"]["run_id"] in _model_source_runs(servers["mlflow"], uris[name]), name

    from mlflow import MlflowClient

    client = MlflowClient(servers["mlflow"])
    experiment = client.get_experiment_by_name("real-servers")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    parents = {s["mlflow"]["parent_run_id"] for s in summaries.values()}
    assert parents <= {r.info.run_id for r in found}  # no run lost
    assert all(r.info.status == "FINISHED" for r in found), [(r.info.run_name, r.info.status) for r in found]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") in parents]
    assert len(children) >= 2
    # The same data seed on both runners: the oracle's labels (their fingerprint) agree.
    assert len({r.data.params.get("data_id") for r in children if r.data.params.get("data_id")}) == 1

    campaign_runs = [r for r in _flow_runs(servers["prefect"]) if r["name"] and r.get("state_type")]
    completed = [r for r in campaign_runs if r["state_type"] == "COMPLETED"]
    assert len(completed) >= 2, [(r["name"], r["state_type"]) for r in campaign_runs]
