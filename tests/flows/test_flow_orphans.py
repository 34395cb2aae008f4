"""A killed flow leaves no flow run Running in Prefect: the next flow marks it Crashed; nor a run RUNNING or a
logged model PENDING in MLflow: the next Tracker marks them KILLED and FAILED, with the reason (issue 16)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling, Running

from flows.orphans import claim_flow_run, reap_orphan_flow_runs
from tasks.tracking import HOST_TAG, PID_TAG, PROCESS_START_TAG, process_tags

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@flow(name="orphan-probe")
def _probe() -> None:
    pass


@task
def _probe_task() -> None:
    pass


@flow(name="orphan-claimer")
def _claimer() -> list:
    return claim_flow_run()


def _flow_run(client, labels: dict, state=None):
    run = client.create_flow_run(_probe, state=state or Running())
    client.update_flow_run_labels(run.id, labels)
    return run.id


def test_dead_processes_runs_are_crashed_and_live_or_foreign_ones_left(prefect_api):
    host = socket.gethostname()
    dead = {PID_TAG: str(_dead_pid()), HOST_TAG: host, PROCESS_START_TAG: "0"}
    with get_client(sync_client=True) as client:
        orphan = _flow_run(client, dead)
        task = client.create_task_run(_probe_task, flow_run_id=orphan, dynamic_key="0", state=Running())
        cancelling = _flow_run(client, dead, Cancelling())
        live = _flow_run(client, process_tags())
        foreign = _flow_run(client, {**dead, HOST_TAG: "another-host"})
        unlabelled = _flow_run(client, {})
        reaped = reap_orphan_flow_runs(client)
        state = {r: client.read_flow_run(r).state for r in (orphan, cancelling, live, foreign, unlabelled)}
        task_state = client.read_task_run(task.id).state
    assert set(reaped) == {orphan, cancelling}
    assert state[orphan].type == StateType.CRASHED and "ended with the flow run still running" in state[orphan].message
    assert state[cancelling].type == StateType.CANCELLED
    assert task_state.type == StateType.CRASHED
    for run in (live, foreign, unlabelled):
        assert state[run].type == StateType.RUNNING
    with get_client(sync_client=True) as client:  # a second sweep finds nothing left
        assert orphan not in reap_orphan_flow_runs(client)


CHILD = textwrap.dedent("""
    import time
    import advdesign.environment
    from prefect import flow, task
    from flows.orphans import claim_flow_run

    @flow(name="orphan-victim")
    def victim():
        claim_flow_run()
        from prefect.runtime import flow_run
        print("claimed", flow_run.id, flush=True)
        time.sleep(600)

    victim()
""")


def test_a_kill_9_flow_is_crashed_by_the_next_flow(prefect_api, tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(CHILD)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and not line.startswith("claimed"):
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                pytest.fail(f"the victim flow exited ({child.returncode}) before claiming its flow run")
        assert line.startswith("claimed"), "the victim flow did not start within 120 s"
        victim = line.split()[1]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(victim).state.type == StateType.RUNNING  # what Prefect alone leaves
    reaped = [str(r) for r in _claimer()]
    assert victim in reaped
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(victim)
    assert run.state.type == StateType.CRASHED
    assert f"process {child.pid} on {socket.gethostname()}" in run.state.message
    assert run.labels[PID_TAG] == str(child.pid)


def test_a_dead_processs_pending_models_are_failed_with_the_reason_and_a_live_ones_left(tmp_path):
    from mlflow.entities import LoggedModelStatus

    from tasks.tracking import KILLED_REASON_TAG, Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "orphans")
    dead = _dead_pid()
    orphan = tracker.start_run("orphan", tags={PID_TAG: str(dead), PROCESS_START_TAG: "0"})
    alive = tracker.start_run("alive")
    create = tracker.client.create_logged_model
    half = [create(tracker.experiment_id, name=f"half-{i}", source_run_id=orphan).model_id for i in range(2)]
    done = create(tracker.experiment_id, name="done", source_run_id=orphan).model_id
    tracker.client.finalize_logged_model(done, LoggedModelStatus.READY)
    writing = create(tracker.experiment_id, name="writing", source_run_id=alive).model_id  # a live process's

    Tracker(uri, "orphans")  # start-up sweep
    status = {m: str(tracker.client.get_logged_model(m).status).rsplit(".", 1)[-1] for m in [*half, done, writing]}
    assert status == {half[0]: "FAILED", half[1]: "FAILED", done: "READY", writing: "PENDING"}
    for model_id in half:
        assert f"process {dead} on {socket.gethostname()} ended" in \
            tracker.client.get_logged_model(model_id).tags[KILLED_REASON_TAG]
    tracker.end_run(alive)
