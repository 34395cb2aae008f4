"""advdesign.environment: the local Prefect API is started once per process, under PREFECT_HOME's start-up lock,
and the flows then use that one; with a Prefect server configured nothing is started."""

import os
import subprocess
import sys
from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from advdesign.environment import start_local_prefect_api

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import advdesign.environment as environment
from prefect import flow
from prefect.client.orchestration import get_client

url = environment.start_local_prefect_api()
assert environment.start_local_prefect_api() == url  # started once

@flow
def which_api():
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")

print(url.rstrip("/"), which_api())
"""


def test_nothing_is_started_where_a_prefect_server_is_configured():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert start_local_prefect_api() is None


def test_the_flows_use_the_api_started_under_the_homes_lock(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update({"PREFECT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)})
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    started, used = out.stdout.split()
    assert started.startswith("http://127.0.0.1:") and used == started
    assert (tmp_path / "home" / "ephemeral-start.lock").is_file()
