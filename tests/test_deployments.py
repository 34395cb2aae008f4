"""prefect.yaml: every deployment points at a real flow, with parameters that flow accepts, on a process pool."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters_are_valid(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert validated is not None
    assert deployment["work_pool"]["name"] == "advdesign-process"
    for schedule in deployment.get("schedules", []):
        assert len(schedule["cron"].split()) == 5


def test_the_nightly_campaign_is_scheduled():
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "molecule-campaign-nightly")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"


def test_a_misspelt_parameter_would_be_caught(monkeypatch):
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows/campaign.py:campaign")
    with pytest.raises(ParameterTypeError):
        flow.validate_parameters({"params": {"data": {"n_labeled": 10}}})
