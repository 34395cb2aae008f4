"""Optuna surrogate tuning for cars end to end: a real ephemeral Prefect API, a real SQLite MLflow store, a real
Optuna SQLite study and the real flow solver on the ``smoke`` lattice (4 cells/m, eager; the plumbing is under
test, as in test_car_campaign.py). Both studies label the same 28 blueprints, so the second is served from
Prefect's cache."""

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient

from advdesign.cli import main
from flows.tune import SEARCH_SPACES, TuneParameters, tune

SMOKE = {"name": "car", "resolution": "smoke", "compile": False, "threads": 1}
TINY_DATA = {"n_labelled": 24, "n_unlabelled": 8, "n_seed_pool": 4, "n_seeds": 2, "oracle_batch_size": 14}
CAR_SPACE = SEARCH_SPACES["car"]


def tiny(uri: str, **overrides) -> TuneParameters:
    base = {"designer": SMOKE, "data": TINY_DATA, "surrogate": {"epochs": 5}, "defenses": ("fgsm", "vat"),
            "n_trials": 2, "study_name": "car-tiny", "tracking_uri": uri}
    return TuneParameters(**{**base, **overrides})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, prefect_api, single_torch_thread):
    folder = tmp_path_factory.mktemp("tune-car")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return folder, uri, [tune(tiny(uri)), tune(tiny(uri))]


def test_car_tune_runs_on_the_car_with_its_own_defaults(two_runs):
    folder, uri, (first, _) = two_runs
    assert first["designer"] == "car" and first["study_storage"] == f"sqlite:///{folder / 'optuna.db'}"
    assert first["n_trials"] == first["n_trials_this_run"] == 2
    assert first["oracle_calls"] == 24 + 4  # labelled + seed pool; validation error designs nothing
    assert first["best_value"] > 0 and first["best_params"]["defense"] in {"fgsm", "vat"}
    parent = MlflowClient(uri).get_run(first["mlflow"]["parent_run_id"])
    assert parent.data.tags["designer"] == "car" and parent.data.params["designer.resolution"] == "smoke"
    # The car's untuned settings are its campaign defaults (batch 64), not the molecule's (128).
    assert TuneParameters(designer={"name": "car"}).surrogate.batch_size == 64


def test_the_car_study_draws_from_the_car_radii(two_runs):
    _, uri, (first, second) = two_runs
    assert first["search_space"] == CAR_SPACE.describe() == {
        "width": "64|64,64|128,128|256,256", "lr": "0.0001..0.01", "eps": "0.01..0.2", "vat_eps": "0.03..0.6",
        "vat_weight": "0.1..10"}
    parent = MlflowClient(uri).get_run(first["mlflow"]["parent_run_id"]).data.params
    assert (parent["space.eps"], parent["space.vat_eps"]) == ("0.01..0.2", "0.03..0.6")
    study = optuna.load_study(study_name="car-tiny", storage=second["study_storage"])
    for trial in study.trials:
        assert trial.params["width"] in CAR_SPACE.widths
        assert CAR_SPACE.eps[0] <= trial.params.get("eps", 0.05) <= CAR_SPACE.eps[1]
        assert CAR_SPACE.vat_eps[0] <= trial.params.get("vat_eps", 0.15) <= CAR_SPACE.vat_eps[1]


def test_the_car_space_keeps_every_draw_in_its_ranges():
    """Many draws without training: every radius lands in the car's range, which excludes the molecule's."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = []
    for _ in range(200):
        trial = study.ask()
        draws.append(CAR_SPACE.suggest(trial, ("fgsm", "vat")))
        study.tell(trial, 0.0)
    eps = [u["eps"] for d, u in draws if d == "fgsm"]
    vat_eps = [u["vat_eps"] for d, u in draws if d == "vat"]
    assert eps and vat_eps
    assert 0.01 <= min(eps) and max(eps) <= 0.2 < SEARCH_SPACES["molecule"].eps[1]
    assert 0.03 <= min(vat_eps) and max(vat_eps) <= 0.6 < SEARCH_SPACES["molecule"].vat_eps[1]
    assert {u["hidden"] for _, u in draws} <= {(64,), (64, 64), (128, 128), (256, 256)}


def test_every_car_trial_is_a_nested_run_and_the_study_resumes(two_runs):
    _, uri, (first, second) = two_runs
    client = MlflowClient(uri)
    study = optuna.load_study(study_name="car-tiny", storage=second["study_storage"])
    assert len(study.trials) == second["n_trials"] == 4 and second["n_trials_this_run"] == 2
    assert set(second["mlflow"]["trial_run_ids"]) == {"2", "3"}
    assert second["best_value"] <= first["best_value"]
    assert study.user_attrs == {"designer": "car", "objective": "validation_mae"}
    for summary in (first, second):
        parent = summary["mlflow"]["parent_run_id"]
        children = client.search_runs([summary["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
        assert {r.info.run_id for r in children} == set(summary["mlflow"]["trial_run_ids"].values())
        for child in children:
            trial = study.trials[int(child.data.tags["optuna.trial_number"])]
            assert child.info.status == "FINISHED" and child.data.tags["optuna.state"] == "COMPLETE"
            assert child.data.metrics["validation_mae"] == pytest.approx(trial.value)
            assert child.data.params["defense"] == trial.params["defense"]


def test_a_car_study_is_not_resumed_as_another_objective_or_designer(two_runs):
    folder, uri, _ = two_runs
    with pytest.raises(ValueError, match="tunes objective 'validation_mae', not 'transfer_rate'"):
        tune(tiny(uri, objective="transfer_rate"))
    with pytest.raises(ValueError, match="tunes designer 'car', not 'molecule'"):
        tune(TuneParameters(study_name="car-tiny", tracking_uri=uri, n_trials=1))
    assert len(optuna.load_study(study_name="car-tiny", storage=f"sqlite:///{folder / 'optuna.db'}").trials) == 4


def test_transfer_rate_is_maximised_from_each_trials_verified_designs(two_runs):
    _, uri, _ = two_runs
    summary = tune(tiny(uri, objective="transfer_rate", study_name=None, n_trials=1, defenses=("none",),
                        search={"steps": 4, "top_k": 2, "budget": 4}))
    assert summary["study_name"] == "advdesign-car-transfer_rate" and summary["direction"] == "maximize"
    assert 0.0 <= summary["best_value"] <= 1.0
    metrics = summary["best_trial_metrics"]
    assert 1 <= metrics["oracle_calls"] <= 4 and summary["oracle_calls"] == 28 + metrics["oracle_calls"]
    # The design stage logged into the trial's own run.
    run_id = summary["mlflow"]["trial_run_ids"]["0"]
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"designs.json", "predicted_vs_true.png"} <= artifacts
    assert MlflowClient(uri).get_run(run_id).data.metrics["transfer_rate"] == pytest.approx(summary["best_value"])


def test_the_cli_gives_a_car_tune_the_car_quick_preset(monkeypatch, tracking_uri):
    import flows.tune

    given = []

    def record(params: TuneParameters) -> dict:
        given.append(params)
        return {}

    monkeypatch.setattr(flows.tune, "tune", record)
    assert main(["tune", "--designer", "car", "--quick", "--resolution", "fine", "--tracking-uri", tracking_uri]) == 0
    (params,) = given
    assert params == TuneParameters.quick({"name": "car", "resolution": "fine"}, tracking_uri=tracking_uri)
    assert (params.data.n_labelled, params.data.n_seed_pool, params.surrogate.epochs, params.n_trials) == (
        192, 64, 150, 8)
    assert params.study == "advdesign-car-validation_mae" and params.space == CAR_SPACE
    assert main(["tune", "--designer", "car", "--quick", "--metric", "oracle_improvement_mean", "--budget", "8",
                 "--tracking-uri", tracking_uri]) == 0
    assert (given[1].objective, given[1].search.budget, given[1].study) == (
        "oracle_improvement_mean", 8, "advdesign-car-oracle_improvement_mean")


@pytest.mark.parametrize("argv, culprit", [
    (["--designer", "car", "--objective", "qed"], "unknown car objective 'qed'; choose one of top_speed, drag_area"),
    (["--designer", "car", "--max-sa", "3"], "--max-sa is a molecule option"),
    (["--resolution", "fine"], "--resolution is a car option; --designer molecule"),
    (["--designer", "car", "--budget", "8"], "--budget"),
])
def test_mismatched_options_fail_in_one_line_naming_the_culprit(argv, culprit, capsys):
    assert main(["tune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err, err
