"""The two standalone flows: train a surrogate, then design with it by its registry alias."""

import json

from mlflow.tracking import MlflowClient

from advdesign.cli import main

DATA = ["--n-labelled", "300", "--n-unlabelled", "0", "--n-pool", "100", "--n-seeds", "4"]


def test_train_then_design_with_the_registered_alias(tmp_path, prefect_api):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained_json, designed_json = tmp_path / "train.json", tmp_path / "design.json"
    assert main(["train", *DATA, "--epochs", "2", "--defense", "vat", "--tracking-uri", uri,
                 "--json", str(trained_json)]) == 0
    trained = json.loads(trained_json.read_text())
    assert trained["model_uri"] == "models:/advdesign-molecule-surrogate@vat"
    assert -10 < trained["validation_r2"] <= 1

    assert main(["design", *DATA, "--model", trained["model_uri"], "--steps", "10", "--budget", "12",
                 "--tracking-uri", uri, "--json", str(designed_json)]) == 0
    designed = json.loads(designed_json.read_text())
    assert designed["n_seeds"] == 4 and designed["n_designs"] <= 12
    run = MlflowClient(uri).get_run(designed["run_id"])
    assert run.data.params["model_uri"] == trained["model_uri"]
    assert "success_rate" in run.data.metrics


def test_a_model_that_does_not_exist_is_a_one_line_error(tmp_path, prefect_api, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["design", *DATA, "--model", "models:/no-such-model@fgsm", "--tracking-uri", uri])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-model" in err
