"""Black-box baselines on the true oracle (tasks.search.black_box: a registered searcher run by the one budgeted
driver): budget, constraints, reproducibility, metrics; the flow and its MLflow runs."""

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from designers import chem
from designers.molecule import MoleculeDesigner
from tasks.search.anytime import share_budget
from tasks.search.black_box import black_box_metrics, per_seed_budget, run_black_box
from tasks.search.driver import BudgetedOracle, BudgetExceeded


@pytest.fixture(scope="module")
def seeds():
    designer = MoleculeDesigner(workers=1)
    designs = designer.sample(3, np.random.default_rng(7))
    return designs, designer.oracle(designs).scores


@pytest.mark.parametrize("method", ["random", "tpe", "hill-climber"])
def test_oracle_calls_never_exceed_the_budget_and_designs_satisfy_the_constraints(method, seeds):
    designs, scores = seeds
    designer = MoleculeDesigner(workers=1)
    shares = per_seed_budget(3, budget=20)
    table = run_black_box(method, designer, designs, scores, shares, seed=3).table
    assert designer.oracle_calls == len(table) <= 20
    assert len(table) == 20  # 3 seeds share 20 calls: 7 + 7 + 6, all used
    assert table.groupby("seed_index").size().tolist() == [7, 7, 6]
    similarity = chem.tanimoto_similarity(list(table["design"]), list(table["seed"]))
    assert (similarity >= 0.4).all()
    assert similarity == pytest.approx(table["similarity"].to_numpy())
    assert (table["design"] != table["seed"]).all()
    assert not table.duplicated(["seed_index", "design"]).any()  # each design scored once per seed
    rescored = MoleculeDesigner(workers=1).oracle(list(table["design"])).scores
    assert rescored == pytest.approx(table["true_score"].to_numpy())


def test_random_search_is_reproducible_with_a_fixed_seed(seeds):
    designs, scores = seeds
    first = run_black_box("random", MoleculeDesigner(workers=1), designs, scores, 4, seed=5)
    again = run_black_box("random", MoleculeDesigner(workers=1), designs, scores, 4, seed=5)
    other = run_black_box("random", MoleculeDesigner(workers=1), designs, scores, 4, seed=6)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert black_box_metrics(first, scores, 4) == black_box_metrics(again, scores, 4)
    assert list(first.table["design"]) != list(other.table["design"])


def test_metrics_follow_the_campaign_and_protocol_definitions(seeds):
    designs, scores = seeds
    result = run_black_box("random", MoleculeDesigner(workers=1), designs, scores, 3, seed=1)
    table = result.table
    metrics = black_box_metrics(result, scores, 3, checkpoints=(1, 2, 100))
    gains = [table[table["seed_index"] == i]["true_score"].max() - scores[i] for i in range(3)]
    assert metrics["oracle_improvement_mean"] == pytest.approx(np.mean(gains))
    assert metrics["improvement_mean"] == pytest.approx(np.mean(np.maximum(gains, 0)))
    assert metrics["success_rate"] == pytest.approx(np.mean([g > 0 for g in gains]))
    assert metrics["oracle_calls"] == metrics["n_designs"] == metrics["budget"] == 9
    assert metrics["calls_per_seed"] == 3 and metrics["search_oracle_calls_per_seed_max"] == 3
    # checkpoints up to the per-seed budget (3 calls); 100 is beyond it
    assert {"improvement_at_1", "improvement_at_2", "improvement_at_3", "oracle_improvement_at_3"} <= set(metrics)
    assert "improvement_at_100" not in metrics
    assert metrics["oracle_improvement_at_3"] == pytest.approx(metrics["oracle_improvement_mean"])
    assert metrics["improvement_at_3"] == pytest.approx(metrics["improvement_mean"])
    assert metrics["best_score_at_1"] <= metrics["best_score_at_2"] <= metrics["best_score_at_3"]
    first_calls = [table[(table["seed_index"] == i) & (table["call"] == 1)]["true_score"].item() for i in range(3)]
    assert metrics["best_score_at_1"] == pytest.approx(np.mean(np.maximum(first_calls, scores)))
    assert metrics["checked"] == metrics["feasible"] + metrics["infeasible"]
    assert metrics["constraint_satisfied_fraction"] == pytest.approx(metrics["feasible"] / metrics["checked"])


def test_the_budgeted_oracle_refuses_the_call_beyond_the_budget():
    designer = MoleculeDesigner(workers=1)
    oracle = BudgetedOracle(designer.oracle, np.array([2]))
    oracle(["CCO"], [0])
    with pytest.raises(BudgetExceeded, match="seed 0: 2 oracle calls asked for, 1 of 2 left"):
        oracle(["CCC", "CCN"], [0, 0])
    assert designer.oracle_calls == oracle.used.sum() == 1
    assert share_budget(10, 4) == [3, 3, 2, 2] and sum(share_budget(1000, 7)) == 1000
    assert per_seed_budget(4, budget=10) == [3, 3, 2, 2] and per_seed_budget(4, budget=10, calls_per_seed=6) == [6] * 4
    with pytest.raises(ValueError):
        per_seed_budget(2, budget=-1)


def test_the_flow_runs_every_method_on_the_campaign_seeds_and_logs_them(tmp_path, prefect_api):
    from advdesign.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = tmp_path / "baselines.json"
    code = main(["baselines", "--n-labelled", "60", "--n-unlabelled", "0", "--n-pool", "30", "--n-seeds", "2",
                 "--budget", "10", "--tracking-uri", uri, "--json", str(path)])
    assert code == 0
    summary = json.loads(path.read_text())
    assert summary["budget"] == 10 and summary["calls_per_seed"] == 5
    assert set(summary["methods"]) == {"hill-climber", "genetic", "graph-ga", "random", "tpe"}
    assert summary["oracle_calls"] == 90 + sum(r["oracle_calls"] for r in summary["methods"].values())
    for result in summary["methods"].values():
        assert result["n_seeds"] == 2
        assert result["oracle_calls"] == result["oracle_calls_counted_by_designer"] <= 10
        assert 0 <= result["success_rate"] <= 1
        assert result["improvement_at_5"] == pytest.approx(result["improvement_mean"])
    client = MlflowClient(uri)
    parent = summary["mlflow"]["parent_run_id"]
    assert client.get_run(parent).info.status == "FINISHED"
    children = client.search_runs([summary["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["method"] for r in children) == ["genetic", "graph-ga", "hill-climber", "random", "tpe"]
    for child in children:
        assert child.data.metrics["oracle_calls"] <= 10
        table = pd.read_csv(client.download_artifacts(child.info.run_id, "designs.csv"))
        assert len(table) == child.data.metrics["oracle_calls"]
        assert (chem.tanimoto_similarity(list(table["design"]), list(table["seed"])) >= 0.4).all()


def test_calls_per_seed_overrides_the_shared_budget():
    from flows.baselines import BaselineParameters

    params = BaselineParameters(calls_per_seed=7, methods=("tpe",))
    assert params.calls_per_seed == 7 and params.methods == ("tpe",)
    assert BaselineParameters().methods == ("hill-climber", "genetic", "graph-ga", "random", "tpe")
    with pytest.raises(ValueError, match="unknown baseline 'cmaes' for molecule"):
        BaselineParameters(methods=("cmaes",))


def test_cma_es_finds_the_optimum_of_a_quadratic():
    from tasks.search.cmaes import CMAES

    es = CMAES(np.full(12, 0.2), 0.1, np.random.default_rng(0))
    target = np.linspace(0.3, 0.7, 12)
    for _ in range(150):
        x = es.ask()
        es.tell(x, -((x - target) ** 2).sum(axis=1))
    assert np.abs(es.mean - target).max() < 1e-3


@pytest.mark.parametrize("method", ["cmaes", "random"])
def test_car_baselines_stay_within_the_budget_and_the_feasible_set(method):
    from designers.car import CarDesigner

    designer = CarDesigner(resolution="smoke", compile=False, threads=1, max_change_from_seed_m=0.3)
    seeds = designer.sample(2, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    designer.oracle_calls = 0
    result = run_black_box(method, designer, seeds, scores, per_seed_budget(2, budget=5), seed=3)
    table = result.table
    assert designer.oracle_calls == len(table) == 5 and table.groupby("seed_index").size().tolist() == [3, 2]
    assert table.groupby("seed_index")["call"].apply(list).tolist() == [[1, 2, 3], [1, 2]]
    designs = [designer.parse(k) for k in table["design"]]
    assert designer.constraints(designs, [seeds[i] for i in table["seed_index"]]).satisfied.all()
    assert (table["design"] != table["seed"]).all()
    assert black_box_metrics(result, scores, [3, 2])["oracle_calls"] == 5


@pytest.mark.slow
def test_the_flow_runs_cma_es_and_random_search_on_car_seeds(tmp_path, prefect_api):
    from flows.baselines import BaselineParameters, baselines
    from flows.parameters import DataParameters, DesignerParameters

    params = BaselineParameters(
        designer=DesignerParameters(name="car", resolution="smoke", compile=False),
        data=DataParameters(n_labelled=10, n_unlabelled=0, n_seed_pool=6, n_seeds=2, oracle_batch_size=16),
        budget=4, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert params.methods == ("cmaes", "random")
    summary = baselines(params)
    for method in ("cmaes", "random"):
        result = summary["methods"][method]
        assert result["oracle_calls"] == result["oracle_calls_counted_by_designer"] == 4
        assert result["n_seeds"] == 2 and 0 <= result["success_rate"] <= 1
