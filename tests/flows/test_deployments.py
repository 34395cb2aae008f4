"""prefect.yaml: every deployment points at a real flow, with parameters that flow accepts, on a process pool; every
flow's parameters survive JSON (what a deployment's form in the Prefect UI submits) and validate against the
schema Prefect builds for that form."""

import json
import math
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = PROJECT["deployments"]
FLOWS = ["flows/campaign.py:campaign", "flows/train_surrogate.py:train_surrogate",
         "flows/design_search.py:design_search", "flows/tune.py:tune", "flows/baselines.py:baselines",
         "flows/robustness_evaluation.py:robustness_evaluation"]


def _flow(entrypoint, monkeypatch):
    monkeypatch.chdir(ROOT)
    return load_flow_from_entrypoint(entrypoint)


def _json_defaults(schema: dict) -> dict:
    """What the UI's form holds before anyone edits it: each parameter's default, as JSON."""
    return json.loads(json.dumps({name: p["default"] for name, p in schema["properties"].items() if "default" in p},
                                 allow_nan=False))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters_are_valid(deployment, monkeypatch):
    flow = _flow(deployment["entrypoint"], monkeypatch)
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert validated is not None
    assert deployment["work_pool"]["name"] == "advdesign-process"
    for schedule in deployment.get("schedules", []):
        assert len(schedule["cron"].split()) == 5


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_parameters_validate_against_the_generated_schema(deployment, monkeypatch):
    """The form Prefect's UI shows is built from this schema; the deployment's own values must pass it."""
    flow = _flow(deployment["entrypoint"], monkeypatch)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    given = json.loads(json.dumps(deployment.get("parameters", {})))
    assert validate(given, schema, ignore_required=True) == []


@pytest.mark.parametrize("entrypoint", FLOWS, ids=[e.rsplit(":", 1)[1] for e in FLOWS])
def test_every_default_round_trips_through_json_and_the_schema(entrypoint, monkeypatch):
    """Submitting a deployment's form unchanged: the defaults, as JSON, validate against the schema and give the
    flow exactly its Python defaults back (no infinity turned into null, no tuple lost)."""
    flow = _flow(entrypoint, monkeypatch)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    defaults = _json_defaults(schema)
    assert validate(defaults, schema, ignore_required=True) == []
    # design_search has no default: the form asks for the model URI, every other field has its default.
    filled = {"params": {"model_uri": "models:/m@fgsm"}, **defaults} if "params" in schema.get("required", []) \
        else defaults
    assert validate(filled, schema) == []
    validated = flow.validate_parameters(filled)
    again = flow.validate_parameters(json.loads(json.dumps(_jsonable(validated), allow_nan=False)))
    assert again == validated


def _jsonable(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    assert not (isinstance(value, float) and not math.isfinite(value)), "a non-finite default is not JSON"
    return value


def test_a_campaign_parameter_set_is_plain_json():
    from flows.parameters import CampaignParameters

    for designer in ("molecule", "car"):
        for quick in (False, True):
            params = CampaignParameters.defaults(designer, quick=quick)
            text = json.dumps(params.model_dump(mode="json"), allow_nan=False)
            assert CampaignParameters.model_validate_json(text) == params


def test_the_nightly_campaign_is_scheduled():
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "molecule-campaign-nightly")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"


def test_a_misspelt_parameter_would_be_caught(monkeypatch):
    from prefect.exceptions import ParameterTypeError

    flow = _flow("flows/campaign.py:campaign", monkeypatch)
    with pytest.raises(ParameterTypeError):
        flow.validate_parameters({"params": {"data": {"n_labeled": 10}}})


def test_a_partial_parameter_set_merges_onto_its_preset(monkeypatch):
    """``--param '{"preset": "quick", "data": {"rng_seed": 1}}'``: the quick campaign with another data seed."""
    from flows.parameters import CampaignParameters

    flow = _flow("flows/campaign.py:campaign", monkeypatch)
    params = flow.validate_parameters({"params": {"preset": "quick", "data": {"rng_seed": 1}}})["params"]
    quick = CampaignParameters.defaults("molecule", quick=True)
    assert params.data == quick.data.model_copy(update={"rng_seed": 1})
    assert (params.surrogate, params.search) == (quick.surrogate, quick.search)
    car = flow.validate_parameters({"params": {"preset": "quick", "designer": {"name": "car"},
                                               "search": {"budget": 5}}})["params"]
    car_quick = CampaignParameters.defaults("car", quick=True)
    assert car.data == car_quick.data and car.search == car_quick.search.model_copy(update={"budget": 5})
    # Without a preset the same partial set merges onto the full run's settings.
    full = flow.validate_parameters({"params": {"data": {"rng_seed": 1}}})["params"]
    assert full.data.n_labelled == CampaignParameters().data.n_labelled


def test_the_quick_deployment_is_the_quick_preset(monkeypatch):
    from flows.parameters import CampaignParameters

    quick = next(d for d in DEPLOYMENTS if d["name"] == "molecule-campaign-quick")
    flow = _flow(quick["entrypoint"], monkeypatch)
    assert flow.validate_parameters(quick["parameters"])["params"] == CampaignParameters.defaults(quick=True)


def test_prefect_toml_keeps_prefect_inside_the_project():
    import tomllib

    settings = tomllib.loads((ROOT / "prefect.toml").read_text())
    assert settings["home"] == ".prefect"
    assert settings["server"]["analytics_enabled"] is False
