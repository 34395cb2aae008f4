"""A scheduled campaign as a user meets it (issue 14): a tiny real campaign run as a deployment's scheduled flow run
with a fresh data seed, then its run page in the MLflow UI (`advdesign ui`) looked at with headless Chromium.

Slow (`make test-slow`): the campaign trains and verifies for real, and the MLflow UI takes ~60 s to start on a
loaded 2-core machine. The browser is Debian's `chromium` (`.ci/run` installs it); without it the look is skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

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
    return summary, uri, folder


def test_a_scheduled_campaign_uses_and_logs_a_fresh_data_seed(scheduled_campaign):
    summary, uri, _ = scheduled_campaign
    seed = int(SLOT.timestamp())
    assert summary["rng_seed"] == seed
    parent = MlflowClient(uri).get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data.rng_seed"] == str(seed)  # the seed used, not null
    assert parent.data.tags["data_seed_from"] == f"flow run scheduled start {SLOT.isoformat()}"
    assert summary["defenses"]["none"]["n_seeds"] == 6


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the MLflow UI exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the MLflow UI did not answer {url} within {seconds:.0f} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def mlflow_ui(scheduled_campaign):
    """`advdesign ui` on a loopback port against the campaign's store, as a user starts it."""
    _, uri, folder = scheduled_campaign
    port = _free_port()
    log = folder / "mlflow-ui.log"
    advdesign = Path(sys.executable).with_name("advdesign")
    with log.open("w") as out:
        process = subprocess.Popen([str(advdesign), "ui", "--tracking-uri", uri, "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # ~60 s here (gunicorn/uvicorn workers importing MLflow on a loaded machine).
        _wait_for(f"http://127.0.0.1:{port}/health", process, log, 300)
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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium chromium-driver; .ci/run installs it in CI)")
def test_the_campaigns_run_page_shows_its_name_params_and_metrics(scheduled_campaign, mlflow_ui, tmp_path):
    """The campaign's parent run page, rendered by the real MLflow UI in a real browser: the run's name, the fresh
    data seed it logged as a parameter, and a metric it logged are on the page; a screenshot is kept."""
    summary, _, _ = scheduled_campaign
    mlflow = summary["mlflow"]
    url = f"{mlflow_ui}/#/experiments/{mlflow['experiment_id']}/runs/{mlflow['parent_run_id']}"
    dumped = _chromium(tmp_path, "--dump-dom", url)
    dom = dumped.stdout
    (tmp_path / "run-page.html").write_text(dom)
    assert dumped.returncode == 0 and "<body" in dom, dumped.stderr[-2000:]
    assert "campaign-molecule" in dom, f"the run's name is not on its page (DOM in {tmp_path / 'run-page.html'})"
    assert "data.rng_seed" in dom and str(summary["rng_seed"]) in dom, "the data seed param is not on the page"
    assert "oracle_calls" in dom, "the oracle_calls metric is not on the page"
    screenshot = tmp_path / "run-page.png"
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
