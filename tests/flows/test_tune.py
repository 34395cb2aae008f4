"""Optuna surrogate tuning end to end: a real ephemeral Prefect API, a real SQLite MLflow store, a real Optuna
SQLite study (tiny data, 2 trials a run)."""

import json
import math

import optuna
import pytest
from mlflow.tracking import MlflowClient

from advdesign.cli import main

TINY = ["--n-labelled", "200", "--n-unlabelled", "50", "--n-pool", "0", "--n-seeds", "1", "--epochs", "2",
        "--trials", "2", "--study-name", "tiny"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, prefect_api):
    folder = tmp_path_factory.mktemp("tune")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    summaries = []
    for name in ("first.json", "second.json"):
        assert main(["tune", *TINY, "--tracking-uri", uri, "--json", str(folder / name)]) == 0
        summaries.append(json.loads((folder / name).read_text()))
    return folder, uri, summaries


def test_tune_writes_best_params_value_and_the_study_storage(two_runs):
    folder, uri, (first, _) = two_runs
    assert first["n_trials"] == 2 and first["n_trials_this_run"] == 2
    assert first["study_storage"] == f"sqlite:///{folder / 'optuna.db'}"  # beside the MLflow store
    assert (folder / "optuna.db").is_file()
    assert first["objective"] == "validation_mae" and math.isfinite(first["best_value"]) and first["best_value"] > 0
    assert first["best_params"]["defense"] in {"none", "fgsm", "vat"}
    assert {"lr", "width"} <= set(first["best_params"])
    assert first["mlflow"]["tracking_uri"] == uri


def test_every_trial_is_a_nested_run_with_the_objective(two_runs):
    _, uri, (first, _) = two_runs
    client = MlflowClient(uri)
    parent = client.get_run(first["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["optuna.study_name"] == "tiny"
    children = client.search_runs([first["mlflow"]["experiment_id"]],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1"]
    study = optuna.load_study(study_name="tiny", storage=first["study_storage"])
    for child in children:
        trial = study.trials[int(child.data.tags["optuna.trial_number"])]
        assert child.info.status == "FINISHED"
        assert child.data.metrics["validation_mae"] == pytest.approx(trial.value)
        assert child.data.params["defense"] == trial.params["defense"]
    assert parent.data.metrics["best_validation_mae"] == pytest.approx(first["best_value"])


def test_a_second_run_resumes_the_same_study(two_runs):
    _, uri, (first, second) = two_runs
    assert second["study_storage"] == first["study_storage"]
    assert second["n_trials"] == 4 and second["n_trials_this_run"] == 2
    assert second["best_value"] <= first["best_value"]
    assert second["mlflow"]["parent_run_id"] != first["mlflow"]["parent_run_id"]
    assert set(second["mlflow"]["trial_run_ids"]) == {"2", "3"}
    study = optuna.load_study(study_name="tiny", storage=second["study_storage"])
    assert len(study.trials) == 4
    # the resumed sampler is seeded afresh: no trial repeats an earlier one's parameters
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 4


def test_tune_rejects_an_unknown_defense_in_one_line(capsys):
    assert main(["tune", *TINY, "--defenses", "none,madry"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "choose from none, fgsm, pgd, vat" in err
