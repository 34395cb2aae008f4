"""Ctrl-C or SIGTERM to a command mid-flow: one line, a prompt exit with 128 + the signal, no process left, the
MLflow run KILLED and the Prefect flow run Crashed (issue 16). The victim is a real flow whose task scores
molecules in the forked RDKit pool, signalled as a terminal or a container stop signals: the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL

from advdesign.interrupts import _descendants, _running
from tasks.tracking import KILLED_REASON_TAG

ROOT = Path(__file__).resolve().parents[2]

VICTIM = textwrap.dedent("""
    import sys
    import advdesign.environment
    from prefect import flow, task
    from advdesign import interrupts
    from designers import chem
    from flows.orphans import claim_flow_run
    from tasks.tracking import Tracker

    @task
    def score():
        chem.score_molecules(["CCO" * 5] * 1_000_000, workers=2, parallel_threshold=1)

    @flow(name="interrupt-victim")
    def victim(uri):
        claim_flow_run()
        tracker = Tracker(uri, "interrupts")
        with tracker.run("victim") as run_id:
            future = score.submit()
            from prefect.runtime import flow_run
            print("ready", flow_run.id, run_id, flush=True)
            future.result()

    with interrupts.exit_cleanly("victim"):
        victim(sys.argv[1])
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_flow_exits_in_one_line_with_its_runs_ended(prefect_api, tmp_path, signum):
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(script), uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT, start_new_session=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("ready"), f"victim did not start: {line!r} {child.stderr.read()[-2000:]}"
        _, flow_run_id, run_id = line.split()
        deadline = time.monotonic() + 60
        while len(_descendants(child.pid)) < 2 and time.monotonic() < deadline:  # the pool's workers are up
            time.sleep(0.2)
        workers = _descendants(child.pid)
        assert len(workers) >= 2
        time.sleep(1)
        started = time.monotonic()
        os.killpg(child.pid, signum)  # the whole group, as Ctrl-C in a terminal does
        _, stderr = child.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    reason = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGINT: "interrupted (SIGINT)"}[signum]
    assert child.returncode == 128 + signum
    assert took < 20
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert stderr.splitlines() == [f"victim: {reason}: 1 MLflow run marked KILLED; Prefect flow run "
                                   f"{flow_run.name} Crashed"], stderr
    assert not [pid for pid in workers if _running(pid)]
    assert flow_run.state.type == StateType.CRASHED and flow_run.state.message == reason
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags[KILLED_REASON_TAG] == reason


WRITER = textwrap.dedent("""
    import sys, time
    import advdesign.environment
    import optuna, torch
    import tasks.surrogate
    from advdesign import interrupts
    from flows.tune import mark_trial_process
    from tasks.tracking import Tracker

    def slow_save(model, folder):  # the signal comes while the model's files are being written
        print("writing", flush=True)
        time.sleep(60)

    tasks.surrogate.save_model = slow_save
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with interrupts.exit_cleanly("victim"):
        tracker = Tracker(sys.argv[1], "interrupts")
        study = optuna.create_study(storage=sys.argv[2], study_name="victim")
        trial = study.ask()
        mark_trial_process(trial)
        run_id = tracker.start_run("trial-0")
        print("ready", run_id, trial.number, flush=True)
        tracker.log_model(run_id, torch.nn.Linear(3, 1), "surrogate", torch.zeros(2, 3).numpy(), registered_name="m")
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_model_write_fails_the_model_and_the_trial_with_the_reason(tmp_path, signum):
    """What a killed ``tune`` left behind (issue 16): its trial RUNNING in Optuna and its model PENDING in MLflow.
    A signal now ends both, with the reason, before the process exits."""
    import optuna

    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    child = subprocess.Popen([sys.executable, "-c", WRITER, uri, storage], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ready = child.stdout.readline().split()
        assert ready[:1] == ["ready"], f"{ready} {child.stderr.read()[-2000:]}"
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reason = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGINT: "interrupted (SIGINT)"}[signum]
    assert child.returncode == 128 + signum
    assert stderr.splitlines() == [f"victim: {reason}: 1 MLflow run marked KILLED; 1 Optuna trial marked FAIL"], stderr
    client = mlflow.MlflowClient(uri)
    run = client.get_run(ready[1])
    assert run.info.status == "KILLED" and run.data.tags[KILLED_REASON_TAG] == reason
    models = client.search_logged_models([run.info.experiment_id])
    assert [(str(m.status).rsplit(".", 1)[-1], m.tags.get(KILLED_REASON_TAG)) for m in models] == [("FAILED", reason)]
    trial = optuna.load_study(study_name="victim", storage=storage).trials[int(ready[2])]
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["killed_reason"] == reason
