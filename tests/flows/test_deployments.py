"""prefect.yaml: every deployment points at a real flow, with parameters that flow accepts, on a process pool; every
flow's parameters survive JSON (what a deployment's form in the Prefect UI submits) and validate against the
schema Prefect builds for that form."""

import json
import math
import time
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
    assert deployment["enforce_parameter_schema"] is True  # a wrong --param is refused when the run is created
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


def test_every_campaign_field_has_a_description(monkeypatch):
    """The form shows each field's description: the flow's own parameter (from its docstring) and every field of
    every section."""
    flow = _flow("flows/campaign.py:campaign", monkeypatch)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    fields = {f"{name}": p for name, p in schema["properties"].items()}
    for section, definition in schema["definitions"].items():
        fields.update({f"{section}.{name}": p for name, p in definition.get("properties", {}).items()})
    assert len(fields) > 50
    assert [name for name, p in fields.items() if not p.get("description")] == []


@pytest.mark.parametrize("entrypoint", FLOWS, ids=[e.rsplit(":", 1)[1] for e in FLOWS])
def test_every_top_level_flow_parameter_has_a_description(entrypoint, monkeypatch):
    """Every flow's every own parameter (train's, design's, tune's and baselines' ``params``; the robustness
    evaluation's ``seed``, ``experiment``, …) is described in the form Prefect builds, from the flow's docstring."""
    flow = _flow(entrypoint, monkeypatch)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    assert schema["properties"]
    assert [name for name, p in schema["properties"].items() if not (p.get("description") or "").strip()] == []


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


def _as_the_campaign_runs(flow, parameters: dict):
    """The campaign's parameters as its flow run uses them: validated as the engine does, then the top-level
    preset under params' overrides (the flow's first step)."""
    validated = flow.validate_parameters(parameters)
    return validated["params"].with_preset(validated.get("preset"))


def test_the_quick_deployment_is_the_quick_preset(monkeypatch):
    from flows.parameters import CampaignParameters

    quick = next(d for d in DEPLOYMENTS if d["name"] == "molecule-campaign-quick")
    assert quick["parameters"] == {"preset": "quick"}  # top level, beside params: a --param params=… keeps it
    flow = _flow(quick["entrypoint"], monkeypatch)
    assert _as_the_campaign_runs(flow, quick["parameters"]) == CampaignParameters.defaults(quick=True)


def test_a_top_level_preset_takes_params_as_overrides(monkeypatch):
    """``preset`` beside ``params``: the preset's settings, with what params changes on top; params.preset (the
    older spelling) still works alone, and a top-level preset wins over it."""
    from flows.parameters import CampaignParameters

    flow = _flow("flows/campaign.py:campaign", monkeypatch)
    quick = CampaignParameters.defaults(quick=True)
    seeded = _as_the_campaign_runs(flow, {"preset": "quick", "params": {"data": {"rng_seed": 1}}})
    assert seeded == quick.model_copy(update={"data": quick.data.model_copy(update={"rng_seed": 1})})
    assert seeded.preset == "quick"
    car = _as_the_campaign_runs(flow, {"preset": "quick", "params": {"designer": {"name": "car"},
                                                                     "search": {"budget": 5}}})
    car_quick = CampaignParameters.defaults("car", quick=True)
    assert car.data == car_quick.data and car.search == car_quick.search.model_copy(update={"budget": 5})
    assert _as_the_campaign_runs(flow, {"params": {"preset": "quick"}}) == quick
    assert _as_the_campaign_runs(flow, {"preset": "full", "params": {"preset": "quick"}}) == CampaignParameters()
    assert _as_the_campaign_runs(flow, {"preset": "quick"}) == quick
    # The form's params, every field at its shown (full) default, are no overrides: the preset decides.
    form = json.loads(json.dumps(CampaignParameters().model_dump(mode="json")))
    assert _as_the_campaign_runs(flow, {"preset": "quick", "params": form}) == quick
    # A fresh seed (null) is an override too: the nightly full campaign's, moved onto the quick preset.
    fresh = _as_the_campaign_runs(flow, {"preset": "quick", "params": {"data": {"rng_seed": None}}})
    assert fresh.data.rng_seed is None and fresh.data.n_labelled == quick.data.n_labelled


def test_prefect_toml_keeps_prefect_inside_the_project():
    import tomllib

    settings = tomllib.loads((ROOT / "prefect.toml").read_text())
    assert settings["home"] == ".prefect"
    assert settings["server"]["analytics_enabled"] is False


# --- scheduled deployments draw a fresh data seed (issue 14) --------------------------------------------------


CAMPAIGNS = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/campaign.py:campaign"]


@pytest.mark.parametrize("deployment", CAMPAIGNS, ids=[d["name"] for d in CAMPAIGNS])
def test_scheduled_campaigns_draw_a_fresh_data_seed_and_runs_on_demand_a_fixed_one(deployment, monkeypatch):
    """A nightly campaign with a fixed seed would repeat last night's fully cached run: the scheduled ones ask for a
    fresh seed (null), the on-demand ones keep the reproducible default."""
    flow = _flow(deployment["entrypoint"], monkeypatch)
    params = flow.validate_parameters(deployment["parameters"])["params"]
    assert params.data.rng_seed == (None if deployment.get("schedules") else 0)


def test_a_fresh_seed_is_given_only_for_null():
    from flows.parameters import CampaignParameters

    fixed = CampaignParameters.defaults(quick=True)
    assert fixed.with_data_seed() == (fixed, None)
    seven = CampaignParameters.model_validate({"preset": "quick", "data": {"rng_seed": 7}})
    assert seven.with_data_seed() == (seven, None)
    # Other flows' data sections keep a plain integer seed: null is a campaign's word only.
    from pydantic import ValidationError
    from flows.parameters import DataParameters
    with pytest.raises(ValidationError):
        DataParameters(rng_seed=None)


def test_a_fresh_seed_is_the_flow_runs_scheduled_start_and_a_retry_keeps_it(prefect_api):
    """Two scheduled slots a day apart draw seeds a day (86,400 s) apart; a retry of one flow run draws its seed
    again (Prefect keeps a run's expected start time), so it finds its own cached labels and models."""
    from datetime import datetime, timedelta, timezone

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    from flows.parameters import CampaignParameters

    drawn: list[tuple[int, str]] = []

    @flow(name="fresh-seed-probe", retries=1, retry_delay_seconds=0)
    def probe(params: CampaignParameters) -> list:
        resolved, source = params.with_data_seed()
        drawn.append((resolved.data.rng_seed, source))
        assert resolved.data.model_dump(exclude={"rng_seed"}) == params.data.model_dump(exclude={"rng_seed"})
        if len(drawn) == 1:
            raise RuntimeError("the first attempt fails, so the engine retries the same flow run")
        return drawn

    fresh = CampaignParameters.model_validate({"preset": "quick", "data": {"rng_seed": None}})
    night = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
    seeds = []
    with get_client(sync_client=True) as client:
        for slot in (night, night + timedelta(days=1)):
            drawn.clear()
            run = client.create_flow_run(probe, parameters={"params": fresh}, state=Scheduled(scheduled_time=slot))
            state = run_flow_sync(probe, flow_run=run, parameters={"params": fresh}, return_type="state")
            assert state.is_completed(), state
            assert len(drawn) == 2, "the probe ran once, not retried"
            (first, source), (again, _) = drawn
            assert first == again == int(slot.timestamp())
            assert source == f"flow run scheduled start {slot.isoformat()}"
            seeds.append(first)
    assert seeds[1] - seeds[0] == 86_400
    assert 0 < seeds[0] < 2**32  # every random generator takes it


# --- the deployment form, submitted through a real Prefect server (issue 14) ------------------------------------


@pytest.fixture(scope="module")
def deployed(prefect_api):
    """prefect.yaml's deployments registered as a user does (`prefect deploy --all` from the repository root, the
    real command, in this process) on a real, temporary Prefect server; removed again afterwards. No worker runs:
    nothing is executed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.testing.cli import invoke_and_assert

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="advdesign-process", type="process"))
        except ObjectAlreadyExists:
            pass
    invoke_and_assert(["--no-prompt", "deploy", "--all"], temp_dir=str(ROOT), expected_code=0, echo=False)
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert {d["name"] for d in DEPLOYMENTS} <= set(deployments)
    yield deployments
    with get_client(sync_client=True) as client:
        for name in {d["name"] for d in DEPLOYMENTS}:
            client.delete_deployment(deployments[name].id)


def _form_values(deployment) -> dict:
    """What Prefect's custom-run form holds before anyone edits it, as the browser sends it: each parameter's
    schema default, the deployment's own parameters over them (whole top-level values, as the server merges),
    serialised to JSON (no NaN or infinity survives that)."""
    schema = deployment.parameter_openapi_schema
    defaults = {name: p["default"] for name, p in schema["properties"].items() if "default" in p}
    return json.loads(json.dumps({**defaults, **deployment.parameters}, allow_nan=False))


def _submit(deployment, parameters: dict):
    """POST /deployments/{id}/create_flow_run with the body the UI's form posts (ui-v2 use-create-flow-run-form)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"enforce_parameter_schema": True, "name": "form-submitted", "parameters": parameters,
            "state": {"type": "SCHEDULED", "message": "",
                      "state_details": {"scheduled_time": None, "pause_reschedule": False, "deferred": False,
                                        "untrackable_result": False}},
            "empirical_policy": {"retries": None, "retry_delay": None, "resuming": False, "max_retries": 0,
                                 "retry_delay_seconds": 0},
            "tags": list(deployment.tags), "work_queue_name": None}
    # A 503 is the server saying "busy, try again" (its SQLite database locked under load); Prefect's own client
    # retries it, and so does the UI's user, by pressing the button again.
    for attempt in range(5):
        response = httpx.post(f"{PREFECT_API_URL.value()}/deployments/{deployment.id}/create_flow_run", json=body,
                              timeout=60)
        if response.status_code != 503:
            break
        time.sleep(2 ** attempt)
    return response


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_the_deployment_form_submits_unchanged(deployed, spec, monkeypatch):
    """The custom-run form of every deployment, submitted as it opens: the server (schema enforced) accepts it, the
    UI's own validation finds nothing, and the flow run holds exactly the deployment's settings."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    deployment = deployed[spec["name"]]
    assert deployment.enforce_parameter_schema is True
    assert deployment.parameters == json.loads(json.dumps(spec["parameters"]))
    form = _form_values(deployment)
    checked = httpx.post(f"{PREFECT_API_URL.value()}/ui/schemas/validate", timeout=60,
                         json={"schema": deployment.parameter_openapi_schema, "values": form})
    assert checked.status_code == 200 and checked.json()["errors"] == [], checked.text
    response = _submit(deployment, form)
    assert response.status_code == 201, response.text
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(response.json()["id"])
        client.delete_flow_run(run.id)
    assert run.deployment_id == deployment.id and run.parameters == form
    # What the worker's flow run would start with: the deployment's own settings.
    flow = _flow(spec["entrypoint"], monkeypatch)
    assert flow.validate_parameters(run.parameters) == flow.validate_parameters(spec["parameters"])
    if spec["name"] == "molecule-campaign-quick":
        from flows.parameters import CampaignParameters

        assert _as_the_campaign_runs(flow, run.parameters) == CampaignParameters.defaults(quick=True)


def test_a_partial_param_on_the_quick_deployment_keeps_the_quick_preset(deployed, monkeypatch):
    """`prefect deployment run 'campaign/molecule-campaign-quick' --param params='{"data": {"rng_seed": 1}}'`, the
    real command against the real server: the server updates the deployment's parameters with the run's at the top
    level, so `params` is replaced and `preset: quick` stays; the run is the quick campaign with data seed 1, not a
    45-minute full one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.testing.cli import invoke_and_assert

    from flows.parameters import CampaignParameters

    deployment = deployed["molecule-campaign-quick"]
    with get_client(sync_client=True) as client:
        before = {r.id for r in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))}
    invoke_and_assert(["deployment", "run", "campaign/molecule-campaign-quick", "--param",
                       'params={"data": {"rng_seed": 1}}'], temp_dir=str(ROOT), expected_code=0, echo=False)
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))) if r.id not in before]
        for run in runs:
            client.delete_flow_run(run.id)
    assert len(runs) == 1
    assert runs[0].parameters == {"preset": "quick", "params": {"data": {"rng_seed": 1}}}
    flow = _flow("flows/campaign.py:campaign", monkeypatch)
    quick = CampaignParameters.defaults(quick=True)
    assert _as_the_campaign_runs(flow, runs[0].parameters) == quick.model_copy(
        update={"data": quick.data.model_copy(update={"rng_seed": 1})})


def test_the_server_refuses_a_form_with_a_wrong_value(deployed):
    """The check above can fail: the same server refuses (409) what the schema forbids."""
    deployment = deployed["molecule-campaign-quick"]
    for wrong in ({"params": {"preset": "quick", "data": {"n_labelled": "many"}}},
                  {"params": {"preset": "quick", "search": {"steps": 0}}},
                  {"params": {"preset": "quick", "defenses": ["madry"]}}):
        response = _submit(deployment, wrong)
        assert response.status_code == 409, (wrong, response.status_code, response.text)


# --- the weekly robustness evaluation draws a fresh seed too (issue 14) -----------------------------------------


def test_the_weekly_robustness_evaluation_draws_a_fresh_seed_and_runs_on_demand_a_fixed_one(monkeypatch):
    weekly = next(d for d in DEPLOYMENTS if d["name"] == "robustness-digits-weekly")
    assert weekly["schedules"]
    flow = _flow(weekly["entrypoint"], monkeypatch)
    assert flow.validate_parameters(weekly["parameters"])["seed"] is None
    assert flow.validate_parameters({})["seed"] == 0  # on demand: the reproducible default


def test_a_scheduled_robustness_run_seeds_from_its_scheduled_start_and_logs_the_seed(prefect_api, tmp_path,
                                                                                      monkeypatch):
    """The real flow, as the weekly deployment starts it (``seed: null``) in a scheduled slot: the seed it uses is
    the slot in seconds since 1970 UTC, logged to MLflow as the run's ``seed`` param with a ``seed_from`` tag and
    returned in the summary. (A retry of the same flow run keeps the slot: the campaign's test above.)"""
    from datetime import datetime, timezone

    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    flow = _flow("flows/robustness_evaluation.py:robustness_evaluation", monkeypatch)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parameters = {"dataset": "digits", "seed": None, "quick": True, "defenses": ["none"], "eps": [0.3],
                  "autoattack": False, "tracking_uri": uri}
    slot = datetime(2026, 3, 1, 4, 0, tzinfo=timezone.utc)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow, parameters=parameters, state=Scheduled(scheduled_time=slot))
    state = run_flow_sync(flow, flow_run=run, parameters=parameters, return_type="state")
    assert state.is_completed(), state
    summary = state.result()
    assert summary["seed"] == int(slot.timestamp()) == 1_772_337_600
    logged = MlflowClient(uri).get_run(summary["mlflow"]["run_id"]).data
    assert logged.params["seed"] == str(int(slot.timestamp()))
    assert logged.tags["seed_from"] == f"flow run scheduled start {slot.isoformat()}"
    # The same flow on demand with its default seed: 0, and no seed_from tag.
    fixed = flow(**{**parameters, "seed": 0})
    assert fixed["seed"] == 0
    assert "seed_from" not in MlflowClient(uri).get_run(fixed["mlflow"]["run_id"]).data.tags


def test_a_run_logs_only_its_search_strategys_settings():
    from flows.campaign import flat_params
    from flows.parameters import CampaignParameters

    loop = flat_params(CampaignParameters.quick("molecule"))
    assert "search.calls_per_seed" in loop and "search.steps" not in loop and "search.top_k" not in loop
    one_shot = flat_params(CampaignParameters.quick("molecule").model_copy(
        update={"search": CampaignParameters.quick("molecule").search.model_copy(update={"strategy": "one-shot"})}))
    assert "search.steps" in one_shot and "search.calls_per_seed" not in one_shot and "search.random_share" not in one_shot
    assert loop["search.strategy"] == "loop" and one_shot["search.strategy"] == "one-shot"
