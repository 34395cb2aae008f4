"""The campaign end to end on a real ephemeral Prefect API and a real SQLite MLflow store (tiny settings)."""

import json
import math

import pytest
from mlflow.tracking import MlflowClient

from advdesign.cli import main

TINY = ["--quick", "--n-labelled", "400", "--n-unlabelled", "200", "--n-pool", "100", "--n-seeds", "6", "--epochs", "3", "--steps", "15", "--budget", "30", "--calls-per-seed", "5"]


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory, prefect_api):
    folder = tmp_path_factory.mktemp("campaign")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    path = folder / "campaign.json"
    code = main(["campaign", *TINY, "--tracking-uri", uri, "--json", str(path)])
    return code, json.loads(path.read_text()), uri


def test_campaign_writes_the_summary_json(campaign_run):
    code, summary, uri = campaign_run
    assert code == 0
    assert summary["designer"] == "molecule"
    assert summary["mlflow"]["tracking_uri"] == uri
    assert summary["wall_seconds"] > 0
    # 400 labelled + 100 pool molecules, plus every verified design
    verified = sum(d["n_designs"] for d in summary["defenses"].values())
    assert summary["oracle_calls"] == 500 + verified
    assert set(summary["defenses"]) == {"none", "fgsm", "vat"}
    for result in summary["defenses"].values():
        assert result["n_seeds"] == 6
        assert 0 <= result["n_designs"] <= 30
        for key in ("valid_fraction", "constraint_satisfied_fraction", "success_rate", "transfer_rate"):
            assert 0.0 <= result[key] <= 1.0
        for key in ("oracle_improvement_mean", "predicted_improvement_mean"):
            assert math.isfinite(result[key])
        # The worst-case probe: APGD at the training ε never finds a smaller error than the clean one.
        assert result["probe_apgd_eps"] == 0.1
        assert result["probe_apgd_mae"] >= result["probe_clean_mae"] > 0


def test_mlflow_holds_the_parent_and_a_child_run_per_defense(campaign_run):
    _, summary, uri = campaign_run
    client = MlflowClient(uri)
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [summary["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.data.tags["defense"] for r in children) == ["fgsm", "none", "vat"]
    for child in children:
        metrics = child.data.metrics
        assert {"train_loss", "validation_loss", "validation_r2", "validation_mae", "transfer_rate",
                "probe_apgd_mae"} <= set(metrics)
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 3  # one per epoch
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"designs.json", "designs.csv", "predicted_vs_true.png"} <= artifacts
        # The design loop's child run shows the data its ensemble trained on in MLflow's Datasets panel.
        inputs = client.get_run(child.info.run_id).inputs.dataset_inputs
        contexts = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
        expected = {"training", "validation"} | ({"unlabelled"} if child.data.tags["defense"] == "vat" else set())
        assert set(contexts) == expected, (child.data.tags["defense"], contexts)
        assert json.loads(contexts["training"].profile)["num_rows"] == int(child.data.params["n_train"])
        assert json.loads(contexts["validation"].profile)["num_rows"] == int(child.data.params["n_validation"])
        assert {d.digest for d in contexts.values()} == {child.data.params["data_id"][:36]}
    # Each defense's model is a registered version the summary names; a campaign publishes no alias.
    registered = client.get_registered_model("advdesign-molecule-surrogate")
    assert not registered.aliases
    versions = {f"models:/advdesign-molecule-surrogate/{v.version}"
                for v in client.search_model_versions("name = 'advdesign-molecule-surrogate'")}
    assert {r["model_uri"] for r in summary["defenses"].values()} <= versions


def test_every_verified_design_satisfies_its_constraints(campaign_run):
    import pandas as pd

    _, summary, uri = campaign_run
    client = MlflowClient(uri)
    from designers.molecule import MoleculeDesigner
    from designers import chem

    for defense in summary["defenses"].values():
        path = client.download_artifacts(defense["run_id"], "designs.csv")
        designs = pd.read_csv(path)
        if designs.empty:
            continue
        assert designs["constraint_satisfied"].all()
        similarity = chem.tanimoto_similarity(list(designs["design"]), list(designs["seed"]))
        assert (similarity >= 0.4).all()
        assert (designs["design"] != designs["seed"]).all()
        # The true score column is the oracle's, recomputed here independently.
        rescored = MoleculeDesigner(workers=1).oracle(list(designs["design"])).scores
        assert rescored == pytest.approx(designs["true_score"].to_numpy(), abs=1e-9)


def test_rerun_of_a_finished_campaign_reuses_labels_and_models(campaign_run, tmp_path):
    _, first, _ = campaign_run
    uri = f"sqlite:///{tmp_path / 'again.db'}"
    path = tmp_path / "again.json"
    assert main(["campaign", *TINY, "--tracking-uri", uri, "--json", str(path)]) == 0
    again = json.loads(path.read_text())
    # Same data and settings: cached labels and surrogates give identical results, and much faster.
    for defense in ("none", "fgsm", "vat"):
        assert again["defenses"][defense]["validation_r2"] == first["defenses"][defense]["validation_r2"]
        assert again["defenses"][defense]["transfer_rate"] == first["defenses"][defense]["transfer_rate"]


def test_invalid_seed_lines_are_named_and_the_rest_proceed(tmp_path, prefect_api, capsys):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("CC(=O)Oc1ccccc1C(=O)O\nC1CC\nc1ccccc1O\nnot-a-smiles\n")
    path = tmp_path / "out.json"
    code = main(["campaign", *TINY, "--defenses", "none", "--seeds", str(seeds),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--json", str(path)])
    summary = json.loads(path.read_text())
    assert code == 0
    assert summary["defenses"]["none"]["n_seeds"] == 2
    assert summary["seed_errors"] == [f"{seeds}:2: invalid SMILES 'C1CC'", f"{seeds}:4: invalid SMILES 'not-a-smiles'"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--defenses", "none,madry"], "choose from none, fgsm, pgd, vat"),
        (["--designer", "boat"], "choose one of molecule, car"),
        (["--designer", "boat", "--objective", "qed"], "choose one of molecule, car"),
        (["--designer", "car", "--objective", "qed"], "unknown car objective 'qed'; choose one of top_speed, drag_area"),
        (["--designer", "car", "--min-qed", "0.5"], "--min-qed is a molecule option; --designer car does not"),
        (["--similarity", "0.6", "--resolution", "fine"], "--resolution is a car option; --designer molecule"),
        (["--tracking-uri", "http://127.0.0.1:9/"], "unreachable"),
        (["--tracking-uri", "sqlite:////no/such/folder/m.db"], "does not exist"),
        (["--seeds", "/no/such/seeds.smi"], "seeds file /no/such/seeds.smi not found"),
    ],
)
def test_bad_input_gives_one_line_errors_listing_the_choices(args, message, capsys):
    assert main(["campaign", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_an_empty_seed_file_is_an_error(tmp_path, prefect_api, capsys):
    empty = tmp_path / "seeds.txt"
    empty.write_text("\n# nothing here\n")
    assert main(["campaign", *TINY, "--seeds", str(empty), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "no usable seed" in capsys.readouterr().err


def test_nan_loss_fails_that_defense_in_mlflow_and_keeps_the_others(tmp_path, prefect_api):
    from flows.campaign import campaign
    from flows.parameters import CampaignParameters, DataParameters, SearchParameters, SurrogateParameters

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    params = CampaignParameters(
        data=DataParameters(n_labelled=200, n_unlabelled=0, n_seed_pool=100, n_seeds=3),
        surrogate=SurrogateParameters(hidden=(16,), epochs=2, lr=1e12),  # diverges at once
        search=SearchParameters(steps=5, budget=10),
        defenses=("none",), tracking_uri=uri,
    )
    summary = campaign(params)
    assert "NaN" in summary["defenses"]["none"]["error"] or "inf" in summary["defenses"]["none"]["error"]
    client = MlflowClient(uri)
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FAILED"
    child = client.search_runs([summary["mlflow"]["experiment_id"]],
                               f"tags.mlflow.parentRunId = '{parent.info.run_id}'")[0]
    assert child.info.status == "FAILED" and "TrainingDiverged" in child.data.tags["error"]


def test_rounds_add_verified_designs_to_the_data_and_nest_a_run_per_round(tmp_path, prefect_api):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    path = tmp_path / "rounds.json"
    assert main(["campaign", *TINY, "--defenses", "fgsm", "--search", "one-shot", "--rounds", "2", "--tracking-uri", uri,
                 "--json", str(path)]) == 0
    result = json.loads(path.read_text())["defenses"]["fgsm"]
    first, second = result["rounds"]
    assert result["oracle_calls"] == first["oracle_calls"] + second["oracle_calls"]
    assert second["best_improvement_mean"] >= first["best_improvement_mean"]
    client = MlflowClient(uri)
    rounds = client.search_runs([json.loads(path.read_text())["mlflow"]["experiment_id"]],
                                f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert sorted(r.data.tags["round"] for r in rounds) == ["1", "2"]
    n_train = {r.data.tags["round"]: int(r.data.params["n_train"]) for r in rounds}
    valid_first = round(first["valid_fraction"] * first["n_designs"])
    assert n_train["2"] == n_train["1"] + valid_first  # every scored design joined the training set


# --- predicted_vs_true.png: designs against the diagonal, the seeds apart (issue 14) ----------------------------


def _picture_table():
    import numpy as np
    import pandas as pd

    # Two seeds (true 1.0 and 2.0), three verified designs and one the oracle failed on (left out).
    table = pd.DataFrame({"seed_index": [0, 0, 1, 1], "true_score": [1.5, 0.5, 3.0, 9.0],
                          "predicted": [4.0, 2.5, 3.5, 1.0], "oracle_failure": [None, None, None, "timeout"]})
    return table, np.array([1.0, 2.0, 7.0]), np.array([1.8, 2.6, 5.0])


def _offsets(figure):
    import numpy as np
    from matplotlib.collections import PathCollection

    axis = figure.axes[0]
    return {c.get_label(): np.asarray(c.get_offsets()) for c in axis.collections if isinstance(c, PathCollection)}


def test_predicted_vs_true_puts_designs_at_their_prediction_and_seeds_at_theirs_not_on_the_diagonal():
    import numpy as np
    import matplotlib.pyplot as plt

    from flows.stages import predicted_vs_true_figure

    table, seed_scores, seed_predicted = _picture_table()
    figure = predicted_vs_true_figure(table, seed_scores, seed_predicted)
    points = _offsets(figure)
    # Designs keep (true, predicted); the failed one is not drawn.
    assert np.array_equal(points["designs"], [[1.5, 4.0], [0.5, 2.5], [3.0, 3.5]])
    # The seeds of those designs (0 and 1, not the unused 2) at (true, the surrogate's prediction): off the diagonal.
    seeds = points["seeds (surrogate's prediction)"]
    assert np.array_equal(seeds, [[1.0, 1.8], [2.0, 2.6]])
    assert not np.any(np.isclose(seeds[:, 0], seeds[:, 1]))
    # The diagonal is drawn and labelled, spanning every point.
    diagonal = next(line for line in figure.axes[0].lines if "y = x" in line.get_label())
    assert np.array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    assert min(diagonal.get_xdata()) == 0.5 and max(diagonal.get_xdata()) == 4.0
    plt.close(figure)


def test_seeds_without_a_prediction_are_a_rug_of_their_true_scores_not_points_on_the_diagonal():
    import numpy as np
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from flows.stages import predicted_vs_true_figure

    table, seed_scores, _ = _picture_table()
    for predicted in (None, np.array([np.nan, np.nan, np.nan])):
        figure = predicted_vs_true_figure(table, seed_scores, predicted)
        points = _offsets(figure)
        assert list(points) == ["designs"]  # no seed drawn as a point at all, let alone at (true, true)
        rug = [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]
        assert len(rug) == 1 and "no prediction" in rug[0].get_label()
        assert sorted(segment[0][0] for segment in rug[0].get_segments()) == [1.0, 2.0]
        plt.close(figure)
