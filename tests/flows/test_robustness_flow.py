"""The evaluate command end to end: real Prefect (ephemeral API), real MLflow (a temporary SQLite store)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from torch import nn

from advdesign import cli_evaluate
from tasks.surrogate import Surrogate, register_architecture
from tasks.tracking import Tracker, load_model

EXPERIMENT = "robustness-evaluation-tests"


def _evaluate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="advdesign")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--experiment", EXPERIMENT, *argv])
    return args.func(args)


def _local_path(artifact_uri: str) -> Path:
    return Path(urlparse(artifact_uri).path)


@register_architecture
class RandomClassifier(nn.Module):
    """Ignores its input: the evaluation must flag it rather than report a number."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), 10) + 0 * x.reshape(len(x), -1)[:, :10]


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One MLflow store for the module: creating a SQLite store's schema costs seconds each time."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def digits_run(prefect_api, uri, tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    out = folder / "result.json"
    code = _evaluate("--dataset", "digits", "--quick", "--defenses", "none,fgsm", "--json", str(out), "--tracking-uri", uri)
    return code, uri, json.loads(out.read_text())


def test_evaluate_writes_the_documented_json(digits_run):
    code, uri, result = digits_run
    assert code == 0
    assert result["dataset"] == "digits"
    assert result["mlflow"]["tracking_uri"] == uri and result["mlflow"]["run_id"]
    assert set(result["defenses"]) == {"none", "fgsm"}
    for name, defense in result["defenses"].items():
        assert defense["model_uri"].startswith("models:/")
        assert 0.8 < defense["clean_accuracy"] <= 1.0
        assert set(defense["robust_accuracy"]) == {"fgsm", "pgd", "pgd_double_steps", "pgd_double_restarts",
                                                 "random_noise", "transfer_mlp_deep", "transfer_ensemble", "autoattack"}
        # AutoAttack: the same number in its own field, and AutoAttack's log after each component never rises.
        assert defense["autoattack_accuracy"] == defense["robust_accuracy"]["autoattack"]
        after = defense["autoattack_after_component"]
        assert list(after) == ["apgd_ce", "apgd_t", "fab_t", "square"]
        for e in ("0.1", "0.3"):
            assert defense["autoattack_accuracy"][e] == pytest.approx(after["square"][e])
            assert after["square"][e] <= after["fab_t"][e] <= after["apgd_t"][e] <= after["apgd_ce"][e]
        # The overstatement check says exactly what the numbers say.
        gap = max(defense["robust_accuracy"]["pgd"][e] - defense["autoattack_accuracy"][e] for e in ("0.1", "0.3"))
        assert result["checks"][f"{name}.autoattack_not_below_pgd"]["passed"] == (gap <= 0.02)
        for attack, per_eps in defense["robust_accuracy"].items():
            assert set(per_eps) == {"0.1", "0.3"}
            assert per_eps["0.3"] <= per_eps["0.1"] + 0.02 <= defense["clean_accuracy"] + 0.02
        worst = defense["worst_case_accuracy"]
        assert worst["0.1"] <= min(per_eps["0.1"] for per_eps in defense["robust_accuracy"].values())
    for name, check in result["checks"].items():
        assert isinstance(check["passed"], bool) and check["detail"], name
    assert result["checks"]["none.pgd_not_weaker_than_fgsm"]["passed"]
    assert result["checks"]["none.large_eps_reaches_chance"]["passed"]


def test_test_set_and_models_reproduce_the_clean_accuracy(digits_run):
    _, uri, result = digits_run
    with np.load(_local_path(result["test_set_uri"])) as data:
        x, y = torch.as_tensor(data["X"]), torch.as_tensor(data["y"])
    assert x.shape[1:] == (1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    model = load_model(result["defenses"]["none"]["model_uri"], uri)
    with torch.no_grad():
        clean = float((model(x).argmax(dim=1) == y).float().mean())
    assert clean == pytest.approx(result["defenses"]["none"]["clean_accuracy"], abs=1e-6)


def test_mlflow_holds_the_run_with_a_nested_run_per_defense(digits_run):
    _, uri, result = digits_run
    tracker = Tracker(uri, EXPERIMENT)
    parent = result["mlflow"]["run_id"]
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    children = tracker.client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.params["defense"] for r in children) == ["fgsm", "none"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert "robust_accuracy.pgd.eps_0.3" in child.data.metrics
        assert "robust_accuracy.autoattack.eps_0.3" in child.data.metrics
        assert "autoattack.after_square.eps_0.1" in child.data.metrics
        assert "gaas.dimension_mean" in child.data.metrics
        plots = {a.path for a in tracker.client.list_artifacts(child.info.run_id, "plots")}
        assert {"plots/robust_accuracy.png", "plots/cross_sections.png", "plots/logits_along_fgsm.png"} <= plots
    artifacts = {a.path for a in tracker.client.list_artifacts(parent)}
    assert {"robustness_table.json", "robustness_table.csv", "checks.json", "summary.json", "test_set"} <= artifacts


def test_a_regression_surrogate_is_evaluated_by_its_model_uri(prefect_api, uri, tmp_path):
    torch.manual_seed(0)
    surrogate = Surrogate((12,), hidden=(16,))
    x = torch.rand(60, 12)
    with torch.no_grad():
        y = surrogate(x) + 0.1 * torch.randn(60)
    tracker = Tracker(uri, EXPERIMENT)
    with tracker.run("surrogate-under-test") as run_id:
        model_uri = tracker.log_model(run_id, surrogate, "model", x[:2].numpy(), registered_name="test-surrogate",
                                      alias="champion", publish=True)
    assert model_uri == "models:/test-surrogate/1"
    np.savez(tmp_path / "test.npz", X=x.numpy(), y=y.numpy())
    out = tmp_path / "result.json"
    code = _evaluate("--model", "models:/test-surrogate@champion", "--test-set", str(tmp_path / "test.npz"), "--quick",
                     "--json", str(out), "--tracking-uri", uri)
    assert code == 0
    result = json.loads(out.read_text())
    report = result["defenses"]["surrogate"]
    assert report["model_uri"] == model_uri and report["task"] == "regression"  # the version, not the alias
    for e in ("0.1", "0.3"):
        assert report["worst_case_adversarial_error"][e] >= report["clean_error"]
        assert report["prediction_change"]["pgd"][e] >= report["prediction_change"]["random_noise"][e]
        # APGD, the surrogate's worst-case probe, runs beside PGD and finds at least (nearly) as much.
        assert report["adversarial_error"]["apgd"][e] >= 0.95 * report["adversarial_error"]["pgd"][e]
    assert report["worst_case_prediction_change"]["0.3"] > report["worst_case_prediction_change"]["0.1"] > 0
    assert all(c["passed"] for c in result["checks"].values()), result["checks"]


def test_a_random_model_is_flagged_not_scored(prefect_api, uri, tmp_path):
    tracker = Tracker(uri, EXPERIMENT)
    x = torch.rand(40, 1, 8, 8)
    with tracker.run("random-model") as run_id:
        model_uri = tracker.log_model(run_id, RandomClassifier(), "model", x[:2].numpy())
    np.savez(tmp_path / "test.npz", X=x.numpy(), y=np.arange(40) % 10)
    out = tmp_path / "result.json"
    assert _evaluate("--model", model_uri, "--test-set", str(tmp_path / "test.npz"), "--quick", "--eps", "0.1",
                     "--json", str(out), "--tracking-uri", uri, "--strict") == cli_evaluate.EXIT_CHECKS_FAILED
    checks = json.loads(out.read_text())["checks"]
    assert not checks["surrogate.deterministic_forward"]["passed"]
    assert not checks["surrogate.clean_accuracy_above_chance"]["passed"]


@register_architecture
class ConstantRandomClassifier(nn.Module):
    """Output independent of the input: no gradient exists at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), 10)


def test_a_model_without_input_gradients_is_a_one_line_error(prefect_api, uri, tmp_path, capsys):
    tracker = Tracker(uri, EXPERIMENT)
    x = torch.rand(20, 1, 8, 8)
    with tracker.run("no-gradient-model") as run_id:
        model_uri = tracker.log_model(run_id, ConstantRandomClassifier(), "model", x[:2].numpy())
    np.savez(tmp_path / "test.npz", X=x.numpy(), y=np.arange(20) % 10)
    capsys.readouterr()  # the setup's own logging
    code = _evaluate("--model", model_uri, "--test-set", str(tmp_path / "test.npz"), "--quick", "--tracking-uri", uri)
    err = capsys.readouterr().err.strip()
    assert code == cli_evaluate.EXIT_ERROR
    assert len(err.splitlines()) == 1 and "not differentiable" in err


def test_a_missing_model_is_a_one_line_error(prefect_api, uri, tmp_path, capsys):
    np.savez(tmp_path / "test.npz", X=np.random.rand(4, 3), y=np.zeros(4))
    code = _evaluate("--model", "models:/no-such-model@champion", "--test-set", str(tmp_path / "test.npz"),
                     "--tracking-uri", uri)
    err = capsys.readouterr().err.strip()
    assert code == cli_evaluate.EXIT_ERROR
    assert len(err.splitlines()) == 1 and "no-such-model" in err


@pytest.mark.parametrize("eps", ["0", "1.5", "-0.1", "nan"])
def test_eps_out_of_range_is_a_one_line_error(prefect_api, uri, capsys, eps):
    code = _evaluate("--dataset", "digits", "--quick", "--eps", eps, "--tracking-uri", uri)
    err = capsys.readouterr().err.strip()
    assert code == cli_evaluate.EXIT_ERROR
    assert len(err.splitlines()) == 1 and "ε out of range" in err


def test_coms_on_the_classifier_benchmark_is_a_one_line_error(prefect_api, uri, capsys):
    code = _evaluate("--dataset", "digits", "--quick", "--defenses", "none,coms", "--tracking-uri", uri)
    err = capsys.readouterr().err.strip()
    assert code == cli_evaluate.EXIT_ERROR
    assert len(err.splitlines()) == 1 and "coms" in err and "classifiers" in err
