"""Real servers, not the embedded defaults (issue 16, part 5): PostgreSQL (Debian's package), an MLflow tracking
server on it, a Prefect server, and a Dask scheduler with two worker processes on loopback (``dask scheduler`` and
``dask worker``, each started here as its own process: not a LocalCluster). Eight small campaigns run at once
against them, four on the Dask cluster and four on threads: no MLflow run is lost or left open, no logged model is
left PENDING, every flow run completes, each JSON names its own versioned model (``models:/name/N``, registered
from its own run), and the labels agree: every campaign labels the same designs itself (no cached labels) and the
Dask campaigns' labels are the thread runner's. Beside it: a kill -9 mid-campaign leaves runs, a model, an Optuna
trial (in PostgreSQL) and a flow run that the next run's sweeps end with a reason; database URLs fail in one line
against the live PostgreSQL; eight flows start Prefect's ephemeral API at once on a fresh PREFECT_HOME.

Slow (``make test-slow``, ~5.5 min on 2 shared cores, the eight campaigns ~2.5 min of it). Skipped when
PostgreSQL's ``initdb`` or ``psycopg`` is missing; CI's machine has both (Debian's postgresql package and ``.[dev]``)."""

from __future__ import annotations

import importlib.util
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
from local_servers import free_port, wait_for, wait_for_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: Debian's PostgreSQL programs (initdb, pg_ctl) live in a versioned folder, off PATH.
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
             else 0, default=Path("/usr/lib/postgresql/15/bin"))
#: As small as a campaign gets and still labels, trains, searches and verifies: 200 labelled designs in two oracle
#: batches, one epoch, one ensemble member, two seeds with two oracle calls each.
TINY = ["--quick", "--n-labelled", "200", "--n-unlabelled", "10", "--n-pool", "40", "--n-seeds", "2", "--epochs", "1",
        "--ensemble-size", "1", "--steps", "5", "--budget", "4", "--calls-per-seed", "2", "--batch-per-seed", "2",
        "--proposals-per-incumbent", "16", "--finetune-epochs", "1", "--oracle-batch-size", "100"]
CAMPAIGNS = 8


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
    data, log, port = folder / "pg", folder / "pg.log", free_port()
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
    mlflow_port, prefect_port, dask_port = free_port(), free_port(), free_port()
    processes = []
    try:
        processes.append(_start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
                                 "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                                 "--port", str(mlflow_port), "--workers", "2"], folder / "mlflow.log", env))
        processes.append(_start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                 str(prefect_port)], folder / "prefect.log", env))
        processes.append(_start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(dask_port),
                                 "--no-dashboard"], folder / "scheduler.log", env))
        wait_for_port(dask_port, processes[-1], folder / "scheduler.log")
        for i in range(2):
            processes.append(_start([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{dask_port}", "--nthreads", "1",
                                     "--nworkers", "1", "--no-dashboard", "--name", f"w{i}"],
                                    folder / f"worker{i}.log",
                                    {**env, "PREFECT_TASKS_REFRESH_CACHE": "true",
                                     "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api"}))
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", processes[0], folder / "mlflow.log")
        wait_for(f"http://127.0.0.1:{prefect_port}/api/health", processes[1], folder / "prefect.log")
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


def _flow_runs(api: str, flow_name: str) -> list[dict]:
    body = {"flows": {"name": {"any_": [flow_name]}}, "limit": 200}
    request = urllib.request.Request(f"{api}/flow_runs/filter", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _tasks_executed_by_workers(address: str) -> dict[str, int]:
    """Tasks each Dask worker process has run (the scheduler's view: its workers are real processes, not threads)."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def test_eight_campaigns_at_once_on_postgres_mlflow_prefect_and_dask_servers(servers, folder):
    env = {**os.environ, "PREFECT_API_URL": servers["prefect"], "PREFECT_HOME": servers["home"],
           "MLFLOW_TRACKING_URI": servers["mlflow"], "PREFECT_TASKS_REFRESH_CACHE": "true"}
    # All eight: the same data seed, so the same designs to label; every campaign labels them itself (no cached
    # labels), half on the Dask cluster and half on threads. Each its own learning rate, so eight different models:
    # identical weights would share one registered version by design (a version per trained model).
    names = [f"{runner}{i}" for i, runner in enumerate(["threads", "dask"] * (CAMPAIGNS // 2))]
    processes = {}
    try:
        for i, name in enumerate(names):
            runner = ["--task-runner", "dask", "--dask-address", servers["dask"]] if name.startswith("dask") else []
            command = [str(BIN / "advdesign"), "campaign", *TINY, "--lr", f"{0.001 + 0.0001 * i:.4f}",
                       "--defenses", "none", "--experiment", "real-servers", "--json", str(folder / f"{name}.json"),
                       *runner]
            processes[name] = _start(command, folder / f"{name}.log", env)
        deadline = time.monotonic() + 1200
        for name, process in processes.items():
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, f"{name}: exit {code}: " + (folder / f"{name}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            _stop(process)

    summaries = {name: json.loads((folder / f"{name}.json").read_text()) for name in names}
    defended = {name: s["defenses"]["none"] for name, s in summaries.items()}
    uris = {name: d["model_uri"] for name, d in defended.items()}
    assert all(re.fullmatch(r"models:/[\w.-]+/\d+", uri) for uri in uris.values()), uris  # a version, not an alias
    assert len(set(uris.values())) == CAMPAIGNS, uris  # each its own model ...
    for name, one in defended.items():  # ... registered from its own run
        assert _model_source_runs(servers["mlflow"], uris[name]) == {one["run_id"]}, name

    from mlflow import MlflowClient

    client = MlflowClient(servers["mlflow"])
    experiment = client.get_experiment_by_name("real-servers")
    found = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id], max_results=1000)}
    parents = {s["mlflow"]["parent_run_id"] for s in summaries.values()}
    children = {d["run_id"] for d in defended.values()}
    assert len(parents) == len(children) == CAMPAIGNS
    assert set(found) == parents | children, sorted(r.info.run_name for r in found.values())  # no run lost or extra
    assert all(r.info.status == "FINISHED" for r in found.values()), [(r.info.run_name, r.info.status)
                                                                      for r in found.values()]
    assert {found[c].data.tags.get("mlflow.parentRunId") for c in children} == parents
    logged = client.search_logged_models([experiment.experiment_id], max_results=1000)
    assert len(logged) == CAMPAIGNS and all(str(m.status).endswith("READY") for m in logged), \
        [(m.name, str(m.status)) for m in logged]  # none left PENDING
    # The same designs labelled by every campaign, on threads and on Dask: the labels' fingerprint agrees.
    data_ids = {name: found[d["run_id"]].data.params.get("data_id") for name, d in defended.items()}
    assert all(data_ids.values()) and len(set(data_ids.values())) == 1, data_ids
    executed = _tasks_executed_by_workers(servers["dask"])
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed  # both worker processes worked

    flow_runs = _flow_runs(servers["prefect"], "campaign")
    states = sorted(r["state_type"] for r in flow_runs)
    assert states == ["COMPLETED"] * CAMPAIGNS, states  # none left Running or Crashed


KILLED_CAMPAIGN = """
import sys, time
import advdesign.environment
import optuna
from prefect import flow
from prefect.runtime import flow_run
from flows.orphans import claim_flow_run
from flows.tune import mark_trial_process
from tasks.tracking import Tracker

@flow(name="killed-campaign")
def killed(optuna_storage):
    claim_flow_run()
    tracker = Tracker(None, "real-servers-orphans")
    parent = tracker.start_run("campaign")
    child = tracker.start_run("none", parent_run_id=parent)
    model = tracker.client.create_logged_model(tracker.experiment_id, name="surrogate", source_run_id=child)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(storage=optuna_storage, study_name="orphans", load_if_exists=True).ask()
    mark_trial_process(trial)
    print("ready", flow_run.id, parent, child, model.model_id, trial.number, flush=True)
    time.sleep(600)

killed(sys.argv[1])
"""


def test_a_kill_9_leaves_nothing_running_on_the_servers_once_the_next_run_sweeps(servers, postgres, folder):
    """kill -9 mid-campaign (no handler runs): its MLflow runs RUNNING and model PENDING on the tracking server, its
    Optuna trial RUNNING in PostgreSQL, its flow run Running on the Prefect server. The next run's start-up sweeps
    (Tracker, open_study, claim_flow_run) mark each ended, with the dead process named as the reason."""
    import optuna
    import psycopg
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.orphans import reap_orphan_flow_runs
    from flows.tune import fail_orphan_trials
    from tasks.tracking import KILLED_REASON_TAG, Tracker

    with psycopg.connect(postgres.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute("CREATE DATABASE optuna")
    storage = postgres.rsplit("/", 1)[0] + "/optuna"
    env = {**os.environ, "PREFECT_API_URL": servers["prefect"], "PREFECT_HOME": servers["home"],
           "MLFLOW_TRACKING_URI": servers["mlflow"], "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    log = folder / "killed.log"
    victim = _start([sys.executable, "-c", KILLED_CAMPAIGN, storage], log, env)
    try:
        deadline = time.monotonic() + 300
        while not (ready := re.search(r"^ready (.+)$", log.read_text(), re.M)) and victim.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready, log.read_text()[-3000:]
    finally:
        os.killpg(victim.pid, 9)
        victim.wait(timeout=30)
    flow_run_id, parent, child, model_id, trial_number = ready.group(1).split()

    gone = f"process {victim.pid} on {socket.gethostname()} ended"
    tracker = Tracker(servers["mlflow"], "real-servers-orphans")  # the next run's start-up
    client = MlflowClient(servers["mlflow"])
    for run_id in (parent, child):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and gone in run.data.tags[KILLED_REASON_TAG], run.info
    model = client.get_logged_model(model_id)
    assert str(model.status).endswith("FAILED") and gone in model.tags[KILLED_REASON_TAG]
    assert tracker.reap_orphans() == []  # once only

    study = optuna.load_study(study_name="orphans", storage=storage)
    assert fail_orphan_trials(study) == [int(trial_number)]
    trial = optuna.load_study(study_name="orphans", storage=storage).trials[int(trial_number)]
    assert trial.state == optuna.trial.TrialState.FAIL and f"process {victim.pid}" in trial.user_attrs["killed_reason"]

    with temporary_settings({PREFECT_API_URL: servers["prefect"]}), get_client(sync_client=True) as prefect:
        assert [str(r) for r in reap_orphan_flow_runs(prefect)] == [flow_run_id]
        state = prefect.read_flow_run(flow_run_id).state
    assert state.type.value == "CRASHED" and f"orphaned: process {victim.pid}" in state.message


def test_database_urls_fail_in_one_line_before_any_work_against_a_real_postgresql(postgres, capsys):
    """The store checks against a live PostgreSQL: its plain ``postgresql://`` URL (SQLAlchemy's default driver)
    passes; a database that does not exist, a dead port and a driver that is not installed fail in one line, at
    once, naming the URL (the password hidden), before any work."""
    from advdesign.cli import main
    from tasks.tracking import check_reachable

    check_reachable(postgres)
    check_reachable(postgres.replace("postgresql+psycopg://", "postgresql://"))
    base, port = postgres.rsplit("/", 1)[0], postgres.rsplit(":", 1)[1].split("/")[0]
    bad = {base.replace("postgres@", "postgres:secret@") + "/nosuchdb": r'cannot connect: .*"nosuchdb" does not exist',
           base.replace(port, str(free_port())) + "/mlflow": r"database server 127.0.0.1:\d+ is unreachable",
           postgres.replace("+psycopg:", "+pg8000:"): r"the database driver 'pg8000' is not installed \(pip install"}
    if importlib.util.find_spec("pg8000") is not None:
        bad.popitem()
    for url, expected in bad.items():
        started = time.monotonic()
        code = main(["train", "--tracking-uri", url])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and re.search(expected, err), err
        assert "secret" not in err and time.monotonic() - started < 15, err


EPHEMERAL_FLOW = """
import advdesign.environment
from prefect import flow, task
from flows.orphans import claim_flow_run

@task
def one():
    return 1

@flow(name="ephemeral-start")
def start():
    claim_flow_run()
    return one()

advdesign.environment.start_local_prefect_api()  # as every advdesign command does before its flows
print("ok", start())
"""


def test_eight_flows_start_the_ephemeral_prefect_api_at_once_on_a_fresh_home(folder):
    """Without a Prefect server every command starts Prefect's ephemeral API on PREFECT_HOME's SQLite database;
    eight of them at once on a fresh home (the migrations race) all start: one after another under the home's
    start-up lock (advdesign.environment.start_local_prefect_api), each within the start-up timeout."""
    home = folder / "fresh-prefect-home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update({"PREFECT_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    processes = [_start([sys.executable, "-c", EPHEMERAL_FLOW], folder / f"ephemeral{i}.log", env)
                 for i in range(CAMPAIGNS)]
    try:
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            _stop(process)
    logs = [(folder / f"ephemeral{i}.log").read_text() for i in range(CAMPAIGNS)]
    assert codes == [0] * CAMPAIGNS, [log[-1500:] for log, code in zip(logs, codes) if code]
    assert all(log.splitlines()[-1] == "ok 1" for log in logs), logs
