"""The equal-budget benchmark's bookkeeping: gradient candidates in surrogate order, curves with a charged
labelling offset or a per-method cap, and a whole run without Prefect or MLflow with the black boxes and the design
loop on the one budgeted driver (benchmarks/equal_budget.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SPEC = importlib.util.spec_from_file_location(
    "equal_budget", Path(__file__).resolve().parents[2] / "benchmarks" / "equal_budget.py")
equal_budget = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(equal_budget)


def test_curve_charges_labelling_by_reading_later_and_stops_at_a_cap():
    verified = pd.DataFrame({"seed_index": [0, 0, 1], "call": [1, 2, 1], "true_score": [2.0, 5.0, 1.0],
                             "oracle_failure": [None, None, None]})
    seeds = np.array([0.0, 0.0])
    plain = equal_budget.curve(verified, seeds, [1, 2, 4])
    assert plain["improvement"] == {1: 1.5, 2: 3.0, 4: 3.0}
    assert plain["oracle_calls"] == 3 and plain["calls_per_seed_min"] == 1 and plain["calls_per_seed_mean"] == 1.5
    charged = equal_budget.curve(verified, seeds, [1, 2, 4], offset=2)  # 2 calls a start went to labelling
    assert charged["improvement"] == {1: 0.0, 2: 0.0, 4: 3.0}
    capped = equal_budget.curve(verified, seeds, [1, 2, 4], cap=2)
    assert capped["improvement"] == {1: 1.5, 2: 3.0, 4: None}
    summary = equal_budget.summarise([{**capped, "wall_seconds": 1.0}] * 2, [1, 2, 4])
    assert summary["improvement"]["4"]["mean"] is None and summary["improvement"]["2"]["std"] == 0.0


class Linear(torch.nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2))


def test_gradient_candidates_are_distinct_feasible_ranked_by_the_surrogate_and_verified_in_that_order():
    from designers.molecule import MoleculeDesigner
    from flows.parameters import SearchParameters
    from tasks.pure_stages import Seeds

    designer = MoleculeDesigner(workers=1)
    starts = designer.sample(2, np.random.default_rng(5))
    seeds = Seeds(starts, designer.oracle(starts).scores)
    model = Linear(designer.input_shape)
    before = designer.oracle_calls
    verified, available = equal_budget.run_gradient(designer, model, seeds, SearchParameters(steps=8), restarts=6,
                                                    radius=1.0, seed=0, fraction=0.04, calls_per_seed=2)
    assert designer.oracle_calls - before == len(verified) and len(verified)
    assert set(verified["seed_index"]) <= {0, 1} and available.shape == (2,)
    assert not verified.duplicated(["seed_index", "design"]).any()
    assert (verified["design"] != verified["seed"]).all()
    designs = [designer.parse(k) for k in verified["design"]]
    assert all(designer.constraints(designs, [starts[i] for i in verified["seed_index"]]).satisfied)
    assert verified.groupby("seed_index")["call"].max().max() <= 2
    assert verified["true_score"].notna().all()
    for i, group in verified.sort_values("call").groupby("seed_index"):
        assert group["call"].tolist() == list(range(1, len(group) + 1)) and len(group) == min(2, available[i])
        assert group["predicted"].is_monotonic_decreasing
    # The same ranking without a budget: the candidates themselves.
    none_verified, same = equal_budget.run_gradient(designer, model, seeds, SearchParameters(steps=8), restarts=6,
                                                    radius=1.0, seed=0, fraction=0.04, calls_per_seed=0)
    assert len(none_verified) == 0 and (same == available).all()


@pytest.mark.parametrize("argv, expected", [
    ([], {"checkpoints": (100, 300, 1000), "max_calls": {"tpe": 100}}),
    (["--domain", "car"], {"checkpoints": (10, 30, 50), "baselines": ("cmaes", "random")}),
    (["--checkpoints", "30,10", "--max-calls", "none"], {"checkpoints": (10, 30), "max_calls": {}}),
])
def test_arguments_take_the_domain_defaults(argv, expected):
    args = equal_budget.parse_args(argv)
    for name, value in expected.items():
        assert getattr(args, name) == value


NO_ORCHESTRATION = r"""
import sys

import numpy as np


class Refuse:  # a bare GPU machine: neither Prefect nor MLflow can be imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prefect", "mlflow", "optuna"):
            raise ImportError(f"{name} is not installed here")


sys.meta_path.insert(0, Refuse())
from designers.base import OracleResult
from designers.car import CarDesigner


def oracle(self, designs):  # a cheap smooth stand-in for the flow: this test is about the plumbing
    self.oracle_calls += len(designs)
    x = self.encode(list(designs)).numpy()
    return OracleResult(100 + 10 * np.sin(3 * x).sum(axis=1), [None] * len(designs))


CarDesigner.oracle = oracle
sys.argv = ["equal_budget.py"] + sys.argv[1:]
import runpy

runpy.run_path("benchmarks/equal_budget.py", run_name="__main__")
"""


def test_the_car_benchmark_runs_without_prefect_or_mlflow(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    argv = ["--domain", "car", "--resolution", "smoke", "--n-seeds", "2", "--repeats", "2", "--checkpoints", "3,6",
            "--epochs", "2", "--steps", "4", "--restarts", "2", "--device", "cpu", "--max-batch", "64",
            "--no-orchestration", "--lockstep", "--baselines", "random,cmaes", "--loop", "none", "--no-plot",
            "--output-dir", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", NO_ORCHESTRATION, *argv], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "equal_budget_car.json").read_text())
    assert result["complete"] and result["orchestration"] == "none" and result["mlflow"] is None
    assert result["device"] == "cpu" and result["oracle_max_batch"] == 64 and result["baselines_lockstep"]
    assert set(result["methods"]) == {"gradient/none", "gradient/fgsm", "gradient/vat", "loop/none", "random",
                                      "cmaes"}
    for method, summary in result["methods"].items():
        assert summary["oracle_calls"] == [12, 12], method  # 6 calls for each of 2 starts, in each repeat
        assert all(v >= 0 for v in summary["improvement"]["6"]["per_repeat"])
    assert len(result["methods"]["cmaes"]["lockstep_wall_seconds"]) == 2
    labels = result["labelling_calls"] + result["seed_pool_calls"]
    assert result["oracle_calls_total"] == labels + 6 * 2 * 12
    assert len(result["methods"]["loop/none"]["validation_r2"]) == 2
    # Lockstep: both repeats' CMA-ES and random searches share their oracle calls (and every start of a search
    # shares them anyway: the driver's one call per round).
    assert result["oracle_invocations"] < 1 + 3 * 2 + 2 * 6 + 2 * 2 * 6


def test_runs_of_single_repeats_merge_into_the_run_of_all_repeats(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    argv = ["--domain", "car", "--resolution", "smoke", "--n-seeds", "2", "--repeats", "2", "--checkpoints", "3,6",
            "--epochs", "2", "--device", "cpu", "--no-orchestration", "--defenses", "", "--baselines", "random",
            "--loop", "none", "--no-plot"]
    for name, extra in (("all", []), ("r0", ["--repeat-ids", "0"]), ("r1", ["--repeat-ids", "1"])):
        done = subprocess.run([sys.executable, "-c", NO_ORCHESTRATION, *argv, *extra, "--output-dir",
                               str(tmp_path / name)], cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    merged = equal_budget.run(equal_budget.parse_args(
        ["--merge", str(tmp_path / "r1" / "equal_budget_car.json"), str(tmp_path / "r0" / "equal_budget_car.json"),
         "--output-dir", str(tmp_path / "merged"), "--name", "joined", "--no-plot"]))
    assert merged == json.loads((tmp_path / "merged" / "joined.json").read_text())
    whole = json.loads((tmp_path / "all" / "equal_budget_car.json").read_text())
    assert merged["repeats"] == 2 and merged["repeat_ids"] == [0, 1] and merged["complete"]
    assert merged["oracle_calls_total"] == 2 * (whole["labelling_calls"] + whole["seed_pool_calls"]) + 2 * 2 * 12
    for method in ("random", "loop/none"):
        for c in ("3", "6"):
            mine, theirs = merged["methods"][method]["improvement"][c], whole["methods"][method]["improvement"][c]
            assert mine["per_repeat"] == pytest.approx(theirs["per_repeat"]) and mine["std"] == pytest.approx(
                theirs["std"])
    assert [run["repeat_ids"] for run in merged["merged_from"]] == [[1], [0]]
    # Repeats added to a merged file later: its runs stay listed one by one, not as one run of both repeats.
    r0, r1 = (json.loads((tmp_path / name / "equal_budget_car.json").read_text()) for name in ("r0", "r1"))
    later = equal_budget.merge_repeats([equal_budget.merge_repeats([r0]), r1])
    assert [run["repeat_ids"] for run in later["merged_from"]] == [[0], [1]]
    assert later["methods"] == equal_budget.merge_repeats([r0, r1])["methods"]
    with pytest.raises(SystemExit, match="repeat 0 measured twice"):
        equal_budget.merge_repeats([merged, merged])


def test_a_loop_started_again_with_its_resume_dir_repeats_no_oracle_call(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    argv = ["--domain", "car", "--resolution", "smoke", "--n-seeds", "2", "--repeats", "1", "--checkpoints", "3,6",
            "--epochs", "2", "--device", "cpu", "--no-orchestration", "--defenses", "", "--baselines", "",
            "--loop", "none", "--no-plot", "--resume-dir", str(tmp_path / "state")]
    results = []
    for name in ("first", "again"):
        done = subprocess.run([sys.executable, "-c", NO_ORCHESTRATION, *argv, "--output-dir", str(tmp_path / name)],
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads((tmp_path / name / "equal_budget_car.json").read_text()))
    first, again = results
    labels = first["labelling_calls"] + first["seed_pool_calls"]
    assert first["oracle_calls_total"] == labels + 2 * 6 and again["oracle_calls_total"] == 0
    assert (tmp_path / "state" / "loop-none-r0" / "verified.json").is_file()
    assert again["labelling_calls"] + again["seed_pool_calls"] == labels  # read back, not called
    for c in ("3", "6"):  # the checkpoint keeps the scores as JSON: equal to float32's precision
        assert again["methods"]["loop/none"]["improvement"][c]["mean"] == pytest.approx(
            first["methods"]["loop/none"]["improvement"][c]["mean"], rel=1e-6)
