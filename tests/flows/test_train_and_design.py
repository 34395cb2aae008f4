"""The two standalone flows: train a surrogate, publish it, then design with it by its registry alias."""

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
    assert trained["model_uri"] == "models:/advdesign-molecule-surrogate/1"  # a version, never an alias
    assert -10 < trained["validation_r2"] <= 1
    client = MlflowClient(uri)
    assert not client.get_registered_model("advdesign-molecule-surrogate").aliases  # not published

    # The same training again (cached), published: no second version, the alias now points at the first.
    assert main(["train", *DATA, "--epochs", "2", "--defense", "vat", "--tracking-uri", uri, "--publish",
                 "--json", str(trained_json)]) == 0
    assert json.loads(trained_json.read_text())["model_uri"] == trained["model_uri"]
    assert len(client.search_model_versions("name = 'advdesign-molecule-surrogate'")) == 1

    assert main(["design", *DATA, "--model", "models:/advdesign-molecule-surrogate@vat", "--steps", "10",
                 "--budget", "12", "--tracking-uri", uri, "--json", str(designed_json)]) == 0
    designed = json.loads(designed_json.read_text())
    assert designed["n_seeds"] == 4 and designed["n_designs"] <= 12
    assert designed["model_uri"] == trained["model_uri"]
    run = client.get_run(designed["run_id"])
    assert run.data.params["model_uri"] == trained["model_uri"]
    assert run.data.tags["advdesign.model_version"] == "1"
    assert "success_rate" in run.data.metrics


def test_a_model_that_does_not_exist_is_a_one_line_error(tmp_path, prefect_api, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["design", *DATA, "--model", "models:/no-such-model@fgsm", "--tracking-uri", uri])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-model" in err
