"""A scheduled campaign as a user meets it (issue 14): a tiny real campaign run as a deployment's scheduled flow run
with a fresh data seed, then its run page in the MLflow UI (`advdesign ui`) looked at with headless Chromium.

Slow (`make test-slow`): the campaign trains and verifies for real, and the MLflow UI takes ~60 s to start on a
loaded 2-core machine. The browser is Debian's `chromium` (`.ci/run` installs it); without it the look is skipped.
The Prefect artifacts' links to those MLflow runs are checked fast, on a campaign summary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from local_servers import free_port, wait_for
from mlflow.tracking import MlflowClient

CHROMIUM = Path("/usr/bin/chromium")
#: The scheduled slot the campaign's flow run stands for: its data seed is this time in seconds since 1970 UTC.
SLOT = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
#: tests/flows/test_campaign.py's tiny molecule campaign (one defense): a minute or two on 2 cores.
TINY = {"preset": "quick", "defenses": ["none"],
        "data": {"n_labelled": 400, "n_unlabelled": 200, "n_seed_pool": 100, "n_seeds": 6, "rng_seed": None},
        "surrogate": {"epochs": 3}, "search": {"steps": 15, "budget": 30, "calls_per_seed": 5}}


@pytest.fixture(scope="module")
def scheduled_campaign(tmp_path_factory, prefect_api):
    """The campaign flow, run on a flow run scheduled for :data:`SLOT` (what a deployment's schedule creates), with
    ``data.rng_seed: null`` as the scheduled deployments in prefect.yaml set it."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    from flows.campaign import campaign

    folder = tmp_path_factory.mktemp("scheduled-campaign")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    parameters = campaign.validate_parameters({"params": {**TINY, "tracking_uri": uri}})
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(campaign, parameters=parameters, state=Scheduled(scheduled_time=SLOT))
    summary = run_flow_sync(campaign, flow_run=run, parameters=parameters)
    return summary, uri, folder, run.id


@pytest.mark.slow
def test_a_scheduled_campaign_uses_and_logs_a_fresh_data_seed(scheduled_campaign):
    summary, uri, _, _ = scheduled_campaign
    seed = int(SLOT.timestamp())
    assert summary["rng_seed"] == seed
    parent = MlflowClient(uri).get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data.rng_seed"] == str(seed)  # the seed used, not null
    assert parent.data.tags["data_seed_from"] == f"flow run scheduled start {SLOT.isoformat()}"
    assert summary["defenses"]["none"]["n_seeds"] == 6
    # The data it labelled is the parent run's dataset input (MLflow's Datasets panel), named by its fingerprint.
    contexts = {i.tags[0].value: i.dataset for i in parent.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation"}
    rows = [json.loads(contexts[c].profile)["num_rows"] for c in ("training", "validation")]
    assert rows[0] > rows[1] > 0 and sum(rows) <= 400  # 10 % validation of the 400 labelled (less any unscored)


@pytest.mark.slow
def test_the_scheduled_campaign_leaves_prefect_artifacts_linking_its_mlflow_runs(scheduled_campaign):
    """The flow run's table artifact (a row per defense, every number, a link to the defense's MLflow run) and its
    markdown artifact (the parent run a link)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    summary, _, _, flow_run_id = scheduled_campaign
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}
    assert {"campaign-molecule", "campaign-molecule-table"} <= set(artifacts)
    table = artifacts["campaign-molecule-table"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    (row,) = rows
    child = summary["defenses"]["none"]["run_id"]
    experiment = summary["mlflow"]["experiment_id"]
    assert row["defense"] == "none" and row["n_seeds"] == 6 and "validation_r2" in row and "gap" in row
    assert row["mlflow_run"] == (f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{child}"
                                 "?workflowType=machine_learning")
    parent = summary["mlflow"]["parent_run_id"]
    assert f"[{parent}](http://127.0.0.1:5000/#/experiments/{experiment}/runs/{parent}?workflowType=" \
        in artifacts["campaign-molecule"].data


def test_the_artifacts_link_a_tracking_servers_own_pages():
    from flows.campaign import comparison_markdown, comparison_table

    summary = {"designer": "molecule", "search": "loop", "oracle_calls": 60,
               "mlflow": {"tracking_uri": "https://mlflow.example.org/", "experiment_id": "3", "parent_run_id": "p1"},
               "defenses": {"none": {"n_seeds": 6, "n_designs": 30, "valid_fraction": 1.0,
                                     "constraint_satisfied_fraction": 1.0, "success_rate": 0.5, "transfer_rate": 0.25,
                                     "oracle_improvement_mean": 1.0, "predicted_improvement_mean": 3.5,
                                     "validation_r2": 0.8, "run_id": "c1"},
                            "vat": {"error": "loss is NaN"}}}
    none, vat = comparison_table(summary)
    assert none["gap"] == 2.5 and none["validation_r2"] == 0.8
    assert none["mlflow_run"] == "https://mlflow.example.org/#/experiments/3/runs/c1?workflowType=machine_learning"
    assert vat == {"defense": "vat", "error": "loss is NaN"}
    markdown = comparison_markdown(summary)
    assert "[p1](https://mlflow.example.org/#/experiments/3/runs/p1?workflowType=machine_learning)" in markdown
    assert "[c1](https://mlflow.example.org/#/experiments/3/runs/c1?" in markdown
    assert "advdesign ui" not in markdown  # a server's pages need no local UI


@pytest.fixture(scope="module")
def mlflow_ui(scheduled_campaign):
    """`advdesign ui` on a loopback port against the campaign's store, as a user starts it."""
    _, uri, folder, _ = scheduled_campaign
    port = free_port()
    log = folder / "mlflow-ui.log"
    advdesign = Path(sys.executable).with_name("advdesign")
    with log.open("w") as out:
        process = subprocess.Popen([str(advdesign), "ui", "--tracking-uri", uri, "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # ~60 s here (gunicorn/uvicorn workers importing MLflow on a loaded machine).
        wait_for(f"http://127.0.0.1:{port}/health", process, log, 300)
        yield f"http://127.0.0.1:{port}"
    finally:  # the UI's whole session: its server workers and MLflow's job consumers (huey) too
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the session outlived SIGTERM
        except ProcessLookupError:
            pass
        process.wait()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium, isolated: its own profile, no network beyond the page, no first-run or update traffic."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1600,1200",
               "--virtual-time-budget=40000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium chromium-driver; .ci/run installs it in CI)")
def test_the_campaigns_run_page_shows_its_name_params_and_metrics(scheduled_campaign, mlflow_ui, tmp_path):
    """The campaign's parent run page, rendered by the real MLflow UI in a real browser: the run's name, the fresh
    data seed it logged as a parameter, and a metric it logged are on the page; a screenshot is kept."""
    summary, _, _, _ = scheduled_campaign
    mlflow = summary["mlflow"]
    from flows.campaign import mlflow_run_url

    # The link the campaign's Prefect artifacts give, on this UI's port.
    url = mlflow_run_url(mlflow_ui, mlflow["experiment_id"], mlflow["parent_run_id"])
    dumped = _chromium(tmp_path, "--dump-dom", url)
    dom = dumped.stdout
    (tmp_path / "run-page.html").write_text(dom)
    assert dumped.returncode == 0 and "<body" in dom, dumped.stderr[-2000:]
    assert "campaign-molecule" in dom, f"the run's name is not on its page (DOM in {tmp_path / 'run-page.html'})"
    assert "data.rng_seed" in dom and str(summary["rng_seed"]) in dom, "the data seed param is not on the page"
    assert "oracle_calls" in dom, "the oracle_calls metric is not on the page"
    # The model-training view (runs, models, the registry), not the GenAI one a fresh browser opens by default.
    assert "Model registry" in dom and "Evaluation runs" not in dom, "the run page opened in MLflow's GenAI view"
    screenshot = tmp_path / "run-page.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
