"""Robustness evaluation flow: attacks × ε × defenses, the per-example worst case, sanity checks, the seed's
experiments — all tracked in MLflow (one run, a nested run per defense) and summarised as a Prefect artifact.

Two modes:

* benchmark (``dataset="digits"`` or ``"mnist"``): a small classifier is trained under each defense (none, FGSM,
  PGD, VAT adversarial training, TRADES via :func:`tasks.training.train_model`), then attacked white-box (FGSM,
  PGD-L∞ with random start and restarts, AutoAttack's standard ensemble), with the random-noise baseline and
  black-box (transfer from a substitute and from an ensemble of substitutes trained on the target's labels);
* surrogate (``model_uri`` plus an ``.npz`` test set): any model logged by the project is attacked in its own input
  space — regression robustness (worst-case prediction change and adversarial error max|f(x+δ)−y| per ε and
  attack, with APGD as the worst-case probe beside PGD) or, when the model outputs class logits, the classification protocol without the transfer attacks.

Deployment entrypoint: ``flows/robustness_evaluation.py:robustness_evaluation``.
"""

from __future__ import annotations

import advdesign.environment  # noqa: F401  (Prefect/MLflow defaults before either is imported)

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from torch import nn

from flows.orphans import claim_flow_run
from flows.parameters import fresh_data_seed
from tasks import robustness as rb
from tasks import robustness_plots as plots
from tasks.result_serializer import DATA_SERIALIZER
from tasks.attacks.base import cross_entropy_loss, prediction_loss
from tasks.attacks.transfer import TransferAttack, train_substitute
from tasks.classifiers import ClassificationData, accuracy, build_architecture, load_classification_data
from tasks.tracking import Tracker, load_model, resolve_model_uri
from tasks.training import DEFENSES, REGRESSION_ONLY_DEFENSES, Defense, TrainingConfig, train_model

DefenseName = Literal["none", "fgsm", "pgd", "vat", "trades", "coms"]


@dataclass(frozen=True)
class BenchmarkPlan:
    """Everything a benchmark run trains and measures; :func:`benchmark_plan` gives the quick and full plans."""

    target_architecture: str
    epochs: int
    defense_eps: float
    vat_eps: float
    pgd_training_steps: int
    trades_beta: float
    substitute: str
    ensemble: tuple[str, ...]
    substitute_epochs: int
    settings: rb.EvaluationSettings
    seed_examples: int
    gaas_examples: int
    gaas_eps_l2: float
    cross_section_eps: float
    logits_t_max: float


def benchmark_plan(dataset: str, quick: bool, eps: list[float] | None, seed: int, autoattack: bool = True,
                   autoattack_steps: int | None = None, square_queries: int | None = None) -> BenchmarkPlan:
    """Quick: seconds per defense, for tests and smoke runs. Full: the numbers reported in the docs. AutoAttack:
    the standard version's 100 iterations and 5 000 Square queries unless lowered (quick: 10 and 100)."""
    default_eps = (0.1, 0.3) if quick else (0.05, 0.1, 0.2, 0.3)
    settings = rb.EvaluationSettings(
        eps=tuple(eps) if eps else default_eps,
        pgd_steps=10 if quick else 20,
        pgd_restarts=1 if quick else 4,  # the convergence check showed 1 restart short by 3 points at ε = 0.2
        transfer_steps=10 if quick else 20,
        seed=seed,
        autoattack=autoattack,
        autoattack_steps=autoattack_steps or (10 if quick else 100),
        square_queries=square_queries or (100 if quick else 5000),
    )
    reach = max(settings.eps)
    if dataset == "digits":
        return BenchmarkPlan(  # quick: an MLP target (4× cheaper to train than the CNN) and MLP substitutes
            target_architecture="mlp" if quick else "cnn", epochs=8 if quick else 30, defense_eps=0.1, vat_eps=1.0,
            pgd_training_steps=3 if quick else 7, trades_beta=6.0, substitute="mlp_deep" if quick else "mlp",
            ensemble=("mlp_deep", "mlp") if quick else ("mlp", "mlp_deep", "cnn_wide"),
            substitute_epochs=6 if quick else 30, settings=settings, seed_examples=8 if quick else 50,
            gaas_examples=10 if quick else 100, gaas_eps_l2=2.0, cross_section_eps=reach, logits_t_max=2 * reach,
        )
    if dataset == "mnist":
        return BenchmarkPlan(
            target_architecture="mlp", epochs=3 if quick else 12, defense_eps=0.1, vat_eps=2.0,
            pgd_training_steps=3 if quick else 7, trades_beta=6.0, substitute="cnn",
            ensemble=("cnn", "mlp_deep"),
            substitute_epochs=2 if quick else 4, settings=settings, seed_examples=8 if quick else 50,
            gaas_examples=10 if quick else 100, gaas_eps_l2=5.0, cross_section_eps=reach, logits_t_max=2 * reach,
        )
    raise ValueError(f"unknown dataset {dataset!r}; choose digits or mnist")


# -- tasks ------------------------------------------------------------------------------------------------------
@task(name="train-classifier", task_run_name="train[{defense}]", cache_policy=NO_CACHE, persist_result=False)
def train_classifier(data: ClassificationData, defense: str, plan: BenchmarkPlan) -> nn.Module:
    """The benchmark's target model under one defense, trained by the same trainer as the design surrogates."""
    model = build_architecture(plan.target_architecture, data, seed=plan.settings.seed)
    config = TrainingConfig(
        epochs=plan.epochs, seed=plan.settings.seed,
        defense=Defense(defense, eps=plan.defense_eps, pgd_steps=plan.pgd_training_steps, vat_eps=plan.vat_eps,
                        trades_beta=plan.trades_beta),
    )
    train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, config, task="classification")
    return model


@task(name="train-substitutes", task_run_name="substitutes[{defense}]", cache_policy=NO_CACHE, persist_result=False)
def train_substitutes(data: ClassificationData, target: nn.Module, defense: str,
                      plan: BenchmarkPlan) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """The black-box attacker's models: trained on the target's labels of the training inputs only."""
    models, agreement = {}, {}
    for i, name in enumerate(dict.fromkeys((plan.substitute, *plan.ensemble))):
        substitute = build_architecture(name, data, seed=plan.settings.seed + 100 + i)
        agreement[name] = train_substitute(target, substitute, data.x_train, epochs=plan.substitute_epochs,
                                           seed=plan.settings.seed + 100 + i)
        models[name] = substitute
    return models, agreement


@dataclass
class DefenseResult:
    """What the parent run and the JSON need from one defense's evaluation."""

    name: str
    model_uri: str
    run_id: str
    summary: dict[str, Any]
    checks: list[rb.Check]
    curves: dict[str, dict[float, float]]
    clean: float
    worst_case: dict[float, float]
    metrics: dict[str, float]


def _log_figure(tracker: Tracker, run_id: str, figure: plt.Figure, name: str) -> None:
    tracker.log_figure(run_id, figure, f"plots/{name}.png")
    plt.close(figure)


def _checks_metrics(checks: list[rb.Check]) -> dict[str, float]:
    metrics = {f"check.{c.name}": float(c.passed) for c in checks}
    metrics.update({f"check.{c.name}.{k}": v for c in checks for k, v in c.numbers.items()})
    return metrics


def _classification_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sweep: rb.ClassificationSweep,
                           settings: rb.EvaluationSettings, num_classes: int, transfer: list[str],
                           gradients: rb.Check) -> list[rb.Check]:
    """Every check of the protocol; the sweep already holds PGD with doubled steps and doubled restarts."""
    curves = sweep.robust_accuracy()
    tol = settings.tolerance
    checks = [
        rb.check_deterministic(model, x[:256]),
        gradients,
        rb.check_clean_above_chance(sweep.clean_accuracy, num_classes, settings.chance_margin),
        rb.check_monotone(curves, sweep.clean_accuracy, tol),
        rb.check_stronger(curves, "pgd", "fgsm", tol, "pgd_not_weaker_than_fgsm",
                          "PGD is weaker than FGSM: PGD is broken or not converged"),
        rb.check_stronger(curves, "pgd", "random_noise", tol, "pgd_stronger_than_random_noise",
                          "random noise does as well as PGD: gradients are useless (masked or broken)"),
    ]
    checks.append(rb.check_converged(curves["pgd"], curves["pgd_double_steps"], curves["pgd_double_restarts"], tol))
    large = rb.classification_sweep(model, x, y, {"pgd": rb.white_box_attacks(settings)["pgd"]}, [settings.large_eps],
                                    settings.batch_size).robust_accuracy()["pgd"][settings.large_eps]
    checks.append(rb.check_large_eps_chance(large, settings.large_eps, num_classes, settings.chance_margin))
    if transfer:
        checks.append(rb.check_transfer_weaker(curves, transfer, tol))
    if "autoattack" in curves:
        checks.append(rb.check_autoattack_agrees(curves, tol))
    return checks


def _autoattack_components(made: dict[float, list], clean_correct: np.ndarray) -> dict[str, dict[float, float]]:
    """Robust accuracy after each AutoAttack component in order (AutoAttack's own log): the share of examples right
    clean and not fooled by that component or any before it. ``made[eps]`` are the attack objects of the batches."""
    result: dict[str, dict[float, float]] = {}
    for eps, attacks in made.items():
        fooled = {name: np.concatenate([a.fooled_log[i][name].numpy() for a in attacks for i in range(len(a.fooled_log))])
                  for name in attacks[0].components}
        robust = clean_correct.copy()
        for name in attacks[0].components:
            robust &= ~fooled[name]
            result.setdefault(name, {})[eps] = float(robust.mean())
    return result


@task(name="evaluate-classifier", task_run_name="evaluate[{defense}]", cache_policy=NO_CACHE, persist_result=False)
def evaluate_classifier(
    tracker: Tracker, parent_run_id: str, defense: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    num_classes: int, settings: rb.EvaluationSettings, plan: BenchmarkPlan | None = None,
    substitutes: dict[str, nn.Module] | None = None, substitute_agreement: dict[str, float] | None = None,
    model_uri: str | None = None, params: dict[str, Any] | None = None,
) -> DefenseResult:
    """One defense, one nested run: the sweep, the checks, the seed's experiments, the model and the plots."""
    with tracker.run(f"defense={defense}", parent_run_id=parent_run_id, params={"defense": defense, **(params or {})},
                     tags={"advdesign.stage": "robustness-evaluation"}) as run_id:
        attacks = dict(rb.white_box_attacks(settings))
        # Doubled effort feeds the convergence check *and* the worst case: whatever it finds counts.
        attacks["pgd_double_steps"] = rb.white_box_attacks(settings, steps_multiplier=2)["pgd"]
        attacks["pgd_double_restarts"] = rb.white_box_attacks(settings, restarts_multiplier=2)["pgd"]
        transfer: list[str] = []
        if substitutes and plan is not None:
            s = settings
            single = [substitutes[plan.substitute]]
            ensemble = [substitutes[n] for n in plan.ensemble]

            def transfer_factory(sources: list[nn.Module]) -> rb.AttackFactory:
                return lambda m, e: TransferAttack(m, e, sources, s.transfer_steps, s.pgd_step_factor * e / s.transfer_steps,
                                                   1, cross_entropy_loss, s.lower, s.upper, torch.Generator().manual_seed(s.seed))

            attacks[f"transfer_{plan.substitute}"] = transfer_factory(single)
            attacks["transfer_ensemble"] = transfer_factory(ensemble)
            transfer = [f"transfer_{plan.substitute}", "transfer_ensemble"]
        made: dict[float, list] = {}
        if settings.autoattack:
            build_autoattack = rb.autoattack_factory(settings, num_classes)

            def autoattack(m: nn.Module, e: float):
                attack = build_autoattack(m, e)
                made.setdefault(e, []).append(attack)
                return attack

            attacks["autoattack"] = autoattack
        gradients = rb.require_input_gradients(model, x, y, cross_entropy_loss)
        sweep = rb.classification_sweep(model, x, y, attacks, settings.eps, settings.batch_size)
        curves = sweep.robust_accuracy()
        worst = sweep.worst_case_accuracy()
        checks = _classification_checks(model, x, y, sweep, settings, num_classes, transfer, gradients)

        metrics: dict[str, float] = {"clean_accuracy": sweep.clean_accuracy}
        metrics.update({f"robust_accuracy.{a}.eps_{e:g}": v for a, per in curves.items() for e, v in per.items()})
        metrics.update({f"worst_case_accuracy.eps_{e:g}": v for e, v in worst.items()})
        components = _autoattack_components(made, sweep.clean_correct) if made else {}
        metrics.update({f"autoattack.after_{c}.eps_{e:g}": v for c, per in components.items() for e, v in per.items()})
        for name in transfer:
            metrics.update({f"transfer_success.{name}.eps_{e:g}": v for e, v in rb.transfer_success_rate(sweep, name).items()})
        metrics.update({f"substitute_agreement.{k}": v for k, v in (substitute_agreement or {}).items()})

        # The seed's experiments, on clean-correct test examples.
        if plan is not None:
            correct = torch.as_tensor(sweep.clean_correct)
            xs, ys = x[correct], y[correct]
            sections = rb.cross_sections(model, xs[: plan.seed_examples], ys[: plan.seed_examples], plan.cross_section_eps,
                                         seed=settings.seed)
            logits = rb.logits_along_fgsm(model, xs[: plan.seed_examples], ys[: plan.seed_examples], plan.logits_t_max)
            gaas = rb.gaas_dimension(model, xs[: plan.gaas_examples], ys[: plan.gaas_examples], plan.gaas_eps_l2)
            metrics.update({
                "cross_section.fgsm_axis_misclassified": sections.misclassified_fraction("fgsm"),
                "cross_section.random_axis_misclassified": sections.misclassified_fraction("random"),
                "cross_section.map_misclassified": sections.map_misclassified_fraction(),
                "logits_along_fgsm.linearity_r2": logits.linearity_r2(),
                "gaas.dimension_mean": float(gaas.mean()),
                "gaas.dimension_median": float(np.median(gaas)),
            })
            _log_figure(tracker, run_id, plots.cross_section_maps(sections), "cross_sections")
            _log_figure(tracker, run_id, plots.logits_plot(logits), "logits_along_fgsm")
            _log_figure(tracker, run_id, plots.gaas_histogram(gaas, plan.gaas_eps_l2), "gaas_dimension")
        metrics.update(_checks_metrics(checks))
        tracker.log_metrics(run_id, metrics)
        _log_figure(tracker, run_id, plots.accuracy_curves(curves, sweep.clean_accuracy, f"defense: {defense}",
                                                           worst_case=worst), "robust_accuracy")
        tracker.log_dict(run_id, {c.name: {**c.as_dict(), "numbers": c.numbers} for c in checks}, "checks.json")
        if model_uri is None:
            model_uri = tracker.log_model(run_id, model, "model", x[:2].numpy())
        summary = {
            "model_uri": model_uri,
            "clean_accuracy": sweep.clean_accuracy,
            "robust_accuracy": {a: {rb.eps_key(e): v for e, v in per.items()} for a, per in curves.items()},
            "worst_case_accuracy": {rb.eps_key(e): v for e, v in worst.items()},
            "autoattack_accuracy": {rb.eps_key(e): v for e, v in curves.get("autoattack", {}).items()},
            "autoattack_after_component": {c: {rb.eps_key(e): v for e, v in per.items()} for c, per in components.items()},
            "experiments": {k: v for k, v in metrics.items()
                            if k.startswith(("transfer_success", "substitute_agreement", "cross_section", "logits_", "gaas"))},
        }
        tracker.log_dict(run_id, summary, "summary.json")
    return DefenseResult(defense, model_uri, run_id, summary, checks, curves, sweep.clean_accuracy, worst, metrics)


@task(name="evaluate-regression-surrogate", task_run_name="evaluate surrogate {model_uri}", cache_policy=NO_CACHE,
      persist_result=False)
def evaluate_regression(tracker: Tracker, parent_run_id: str, model: nn.Module, model_uri: str, x: torch.Tensor,
                        y: torch.Tensor, settings: rb.EvaluationSettings) -> DefenseResult:
    """A design surrogate in its designer's input space: how far can an ε-perturbation move its prediction?"""
    with tracker.run("surrogate", parent_run_id=parent_run_id, params={"model_uri": model_uri, "task": "regression"},
                     tags={"advdesign.stage": "robustness-evaluation"}) as run_id:
        gradients = rb.require_input_gradients(model, x, y.to(torch.float32), prediction_loss)

        def attacks(loss: rb.PerExampleLoss) -> dict[str, rb.AttackFactory]:
            """The white-box set plus PGD with doubled steps and restarts (convergence check and worst case)."""
            return {**rb.white_box_attacks(settings, loss),
                    "pgd_double_steps": rb.white_box_attacks(settings, loss, 2)["pgd"],
                    "pgd_double_restarts": rb.white_box_attacks(settings, loss, 1, 2)["pgd"],
                    "apgd": rb.apgd_factory(settings, loss)}

        sweep = rb.regression_sweep(model, x, y, attacks, settings.eps, settings.batch_size)
        error, change = sweep.mean_adversarial_error(), sweep.mean_prediction_change()
        tol = settings.tolerance
        clean_error = float(sweep.clean_error.mean())
        checks = [
            rb.check_deterministic(model, x[:256]),
            gradients,
            rb.check_monotone(error, clean_error, tol, decreasing=False, relative=True),
            rb.check_stronger(error, "pgd", "fgsm", tol, "pgd_not_weaker_than_fgsm",
                              "PGD finds a smaller error than FGSM: PGD is broken or not converged",
                              higher_is_stronger=True, relative=True),
            rb.check_stronger(error, "pgd", "random_noise", tol, "pgd_stronger_than_random_noise",
                              "random noise does as well as PGD: gradients are useless (masked or broken)",
                              higher_is_stronger=True, relative=True),
            rb.check_converged(error["pgd"], error["pgd_double_steps"], error["pgd_double_restarts"], 0.05,
                               higher_is_stronger=True, relative=True),
            rb.check_stronger(error, "pgd", "apgd", 0.05, "pgd_not_weaker_than_apgd",
                              "APGD finds a larger error than PGD: PGD understated the surrogate's worst case",
                              higher_is_stronger=True, relative=True),
        ]
        worst_error, worst_change = sweep.worst_case_adversarial_error(), sweep.worst_case_prediction_change()
        metrics = {"clean_error": clean_error}
        metrics.update({f"adversarial_error.{a}.eps_{e:g}": v for a, per in error.items() for e, v in per.items()})
        metrics.update({f"prediction_change.{a}.eps_{e:g}": v for a, per in change.items() for e, v in per.items()})
        metrics.update({f"worst_case_adversarial_error.eps_{e:g}": v for e, v in worst_error.items()})
        metrics.update({f"worst_case_prediction_change.eps_{e:g}": v for e, v in worst_change.items()})
        metrics.update(_checks_metrics(checks))
        tracker.log_metrics(run_id, metrics)
        _log_figure(tracker, run_id, plots.accuracy_curves(error, clean_error, "surrogate: adversarial error",
                                                           "mean max |f(x+δ) − y|", worst_error), "adversarial_error")
        _log_figure(tracker, run_id, plots.accuracy_curves(change, 0.0, "surrogate: prediction change",
                                                           "mean max |f(x+δ) − f(x)|", worst_change), "prediction_change")
        tracker.log_dict(run_id, {c.name: {**c.as_dict(), "numbers": c.numbers} for c in checks}, "checks.json")
        summary = {
            "model_uri": model_uri,
            "task": "regression",
            "clean_error": clean_error,
            "adversarial_error": {a: {rb.eps_key(e): v for e, v in per.items()} for a, per in error.items()},
            "prediction_change": {a: {rb.eps_key(e): v for e, v in per.items()} for a, per in change.items()},
            "worst_case_adversarial_error": {rb.eps_key(e): v for e, v in worst_error.items()},
            "worst_case_prediction_change": {rb.eps_key(e): v for e, v in worst_change.items()},
        }
        tracker.log_dict(run_id, summary, "summary.json")
    return DefenseResult("surrogate", model_uri, run_id, summary, checks, error, clean_error, worst_error, metrics)


# -- helpers of the flow --------------------------------------------------------------------------------------------
def load_test_set(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``.npz`` with ``X`` (or ``x``) in [0, 1] exactly as the model takes it, and ``y``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"test set {path!r} does not exist (expected an .npz with X and y)")
    with np.load(file) as data:
        keys = set(data.files)
        x_key = "X" if "X" in keys else "x" if "x" in keys else None
        if x_key is None or "y" not in keys:
            raise ValueError(f"test set {path!r} must hold arrays X and y, found {sorted(keys)}")
        x, y = data[x_key], data["y"]
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"test set {path!r}: X has {len(x)} rows and y {len(y)}; need the same non-zero number")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError(f"test set {path!r}: X must be finite and in [0, 1] (got [{x.min():g}, {x.max():g}])")
    y_tensor = torch.as_tensor(y)
    if not y_tensor.is_floating_point():
        y_tensor = y_tensor.long()
    return torch.as_tensor(x, dtype=torch.float32), y_tensor


def _is_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Class logits (n, K>1) and integer labels: classification; anything else is a regression surrogate."""
    try:
        with torch.no_grad():
            out = model(x[:2])
    except Exception as exc:  # noqa: BLE001 - any failure here is a mismatch between model and test set
        raise ValueError(f"the model cannot run on the test set (X of shape {tuple(x.shape)}): "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    integral = not y.is_floating_point() or bool(torch.all(y == y.round()))
    return out.dim() == 2 and out.shape[1] > 1 and integral


def _results_table(results: list[DefenseResult], regression: bool) -> pd.DataFrame:
    rows = []
    for r in results:
        rows.append({"defense": r.name, "attack": "clean", "eps": 0.0, "value": r.clean})
        for attack, per_eps in r.curves.items():
            rows += [{"defense": r.name, "attack": attack, "eps": e, "value": v} for e, v in per_eps.items()]
        rows += [{"defense": r.name, "attack": "worst_case", "eps": e, "value": v} for e, v in r.worst_case.items()]
    table = pd.DataFrame(rows)
    return table.rename(columns={"value": "adversarial_error" if regression else "accuracy"})


def _markdown(dataset: str, results: list[DefenseResult], checks: dict[str, dict[str, Any]], run_url: str,
              regression: bool) -> str:
    eps = sorted(results[0].worst_case)
    value = "mean adversarial error" if regression else "accuracy"
    lines = [f"# Robustness evaluation: {dataset}", "", f"MLflow: {run_url}", "", f"Values: {value} per attack and ε.", "",
             f"| defense | attack | clean | " + " | ".join(f"ε={e:g}" for e in eps) + " |",
             "|---|---|---|" + "---|" * len(eps)]
    for r in results:
        for attack, per_eps in [*r.curves.items(), ("**worst case**", r.worst_case)]:
            lines.append(f"| {r.name} | {attack} | {r.clean:.3f} | " + " | ".join(f"{per_eps[e]:.3f}" for e in eps) + " |")
    failed = [name for name, c in checks.items() if not c["passed"]]
    lines += ["", f"## Sanity checks: {len(checks) - len(failed)}/{len(checks)} passed", "",
              "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {name} | {'✅ pass' if c['passed'] else '❌ FAIL'} | {c['detail']} |" for name, c in checks.items()]
    return "\n".join(lines)


# -- the flow -------------------------------------------------------------------------------------------------------
@flow(name="robustness-evaluation", log_prints=True, validate_parameters=True,
      result_serializer=DATA_SERIALIZER)
def robustness_evaluation(
    dataset: Literal["digits", "mnist"] = "digits",
    model_uri: str | None = None,
    test_set: str | None = None,
    defenses: list[DefenseName] = ["none", "fgsm", "pgd", "vat"],  # noqa: B006 - pydantic copies it
    eps: list[float] | None = None,
    quick: bool = False,
    seed: int | None = 0,
    tracking_uri: str | None = None,
    experiment: str = "robustness-evaluation",
    torch_threads: int | None = 1,
    autoattack: bool = True,
    autoattack_steps: int | None = None,
    square_queries: int | None = None,
) -> dict[str, Any]:
    """Evaluate robustness and return the JSON summary (see ``docs/robustness-evaluation.md``).

    Args:
        dataset: benchmark to train and attack (ignored when ``model_uri`` is given, except as a label).
        model_uri: an MLflow model URI (``models:/NAME@ALIAS``, ``runs:/ID/model``, ``models:/m-…``) to evaluate
            instead of the benchmark; needs ``test_set``.
        test_set: ``.npz`` with ``X`` in [0, 1] as the model takes it and ``y``.
        defenses: benchmark defenses to train and evaluate (coms is for regression surrogates, not the benchmark).
        eps: L∞ radii in input units, each in (0, 1]; default 0.05, 0.1, 0.2, 0.3 (quick: 0.1, 0.3).
        quick: small, fast settings (fewer epochs, steps and examples) for smoke runs and tests.
        seed: seed of the data split, the models' initialisation and training, and the random attacks; null
            (``none`` on the command line): a fresh seed per flow run, its scheduled start time in seconds since
            1970 UTC, as the weekly deployment uses (each week a new split and new models; a retry of the same
            flow run draws the same seed). The seed used is logged to MLflow (param ``seed``, tag ``seed_from``)
            and returned as the summary's ``seed``.
        experiment: MLflow experiment the evaluation's run (and a nested run per defense) is logged to.
        tracking_uri: MLflow store (default: ``MLFLOW_TRACKING_URI`` or the project's SQLite store).
        torch_threads: intra-op threads while the flow runs (small models are fastest on one; ``None`` leaves
            torch's setting); restored afterwards.
        autoattack: run AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) on classifiers beside PGD.
        autoattack_steps: iterations of AutoAttack's APGD-CE, APGD-T and FAB-T (default: the standard's 100; quick: 10).
        square_queries: query budget of AutoAttack's Square attack (default: the standard's 5000; quick: 100).
    """
    if eps is not None:
        rb.validate_eps(eps)
    unknown = [d for d in defenses if d not in DEFENSES]
    if unknown or not defenses:
        raise ValueError(f"unknown or no defenses {unknown}; choose from {', '.join(DEFENSES)}")
    if model_uri is None and any(d in REGRESSION_ONLY_DEFENSES for d in defenses):
        raise ValueError(f"defense(s) {', '.join(d for d in defenses if d in REGRESSION_ONLY_DEFENSES)} penalise a "
                         "surrogate's predicted value and do not apply to the benchmark's classifiers; evaluate a "
                         "COMs-trained surrogate with --model")
    if (autoattack_steps is not None and autoattack_steps < 1) or (square_queries is not None and square_queries < 1):
        raise ValueError("AutoAttack steps and Square queries must be ≥ 1")
    if model_uri is not None and test_set is None:
        raise ValueError("evaluating a model URI needs a test set: an .npz with X (in [0, 1]) and y")
    if model_uri is None and test_set is not None:
        raise ValueError("a test set is only used with a model URI; the benchmarks bring their own")
    previous_threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
        # seed null (the weekly deployment): this flow run's own seed, as a scheduled campaign's data seed.
        seed_source = None
        if seed is None:
            seed, seed_source = fresh_data_seed()
            get_run_logger().info("seed %d (%s)", seed, seed_source)
        tags = {"seed_from": seed_source} if seed_source else {}
        tracker = Tracker(tracking_uri, experiment)
        if model_uri is not None:
            summary = _evaluate_surrogate(tracker, model_uri, test_set, eps, quick, seed, autoattack,
                                          autoattack_steps, square_queries, tags)
        else:
            summary = _evaluate_benchmark(tracker, dataset, list(dict.fromkeys(defenses)), eps, quick, seed,
                                          autoattack, autoattack_steps, square_queries, tags)
        return {**summary, "seed": seed}
    finally:
        torch.set_num_threads(previous_threads)


def _log_test_set(tracker: Tracker, run_id: str, x: torch.Tensor, y: torch.Tensor) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_set.npz"
        np.savez_compressed(path, X=x.numpy(), y=y.numpy())
        tracker.log_artifact(run_id, path, "test_set")
    return tracker.artifact_uri(run_id, "test_set/test_set.npz")


def _finish(tracker: Tracker, run_id: str, label: str, results: list[DefenseResult], test_set_uri: str,
            regression: bool) -> dict[str, Any]:
    """Parent-run artifacts (table, comparison plot, checks), the Prefect markdown artifact and the JSON."""
    checks = {f"{r.name}.{c.name}": c.as_dict() for r in results for c in r.checks}
    table = _results_table(results, regression)
    tracker.log_table(run_id, table, "robustness_table.json")
    tracker.log_dict(run_id, checks, "checks.json")
    passed = sum(c["passed"] for c in checks.values())
    tracker.log_metrics(run_id, {"checks_passed": passed, "checks_failed": len(checks) - passed,
                                 **{f"{r.name}.{k}": v for r in results for k, v in r.metrics.items()
                                    if k.startswith(("clean_", "worst_case", "gaas.dimension_mean"))}})
    if not regression:
        _log_figure(tracker, run_id, plots.defense_comparison({r.name: r.worst_case for r in results},
                                                              {r.name: r.clean for r in results}, label), "defenses")
    summary = {
        "dataset": label,
        "mlflow": {"tracking_uri": tracker.uri, "run_id": run_id},
        "test_set_uri": test_set_uri,
        "defenses": {r.name: r.summary for r in results},
        "checks": checks,
    }
    tracker.log_dict(run_id, summary, "summary.json")
    markdown = _markdown(label, results, checks, tracker.run_url(run_id), regression)
    key = "robustness-" + "".join(ch if ch.isalnum() else "-" for ch in label.lower())[:40].strip("-")
    create_markdown_artifact(markdown=markdown, key=key, description=f"robustness evaluation of {label}")
    failed = [name for name, c in checks.items() if not c["passed"]]
    print(f"robustness evaluation {label}: {passed}/{len(checks)} checks passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return summary


def _evaluate_benchmark(tracker: Tracker, dataset: str, defenses: list[str], eps: list[float] | None, quick: bool,
                        seed: int, autoattack: bool = True, autoattack_steps: int | None = None,
                        square_queries: int | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    plan = benchmark_plan(dataset, quick, eps, seed, autoattack, autoattack_steps, square_queries)
    data = load_classification_data(dataset, quick=quick, seed=seed)
    params = {"dataset": dataset, "quick": quick, "seed": seed, "defenses": ",".join(defenses),
              "eps": ",".join(f"{e:g}" for e in plan.settings.eps), "target_architecture": plan.target_architecture,
              "epochs": plan.epochs, "defense_eps": plan.defense_eps, "pgd_steps": plan.settings.pgd_steps,
              "pgd_restarts": plan.settings.pgd_restarts, "tolerance": plan.settings.tolerance,
              "n_train": len(data.x_train), "n_test": len(data.x_test), "substitute": plan.substitute,
              "ensemble": ",".join(plan.ensemble), "gaas_eps_l2": plan.gaas_eps_l2, "trades_beta": plan.trades_beta,
              "autoattack": plan.settings.autoattack, "autoattack_steps": plan.settings.autoattack_steps,
              "square_queries": plan.settings.square_queries}
    with tracker.run(f"robustness:{dataset}", params=params,
                     tags={"advdesign.stage": "robustness-evaluation", **(tags or {})}) as run_id:
        test_set_uri = _log_test_set(tracker, run_id, data.x_test, data.y_test)
        results = []
        for defense in defenses:
            model = train_classifier(data, defense, plan)
            substitutes, agreement = train_substitutes(data, model, defense, plan)
            results.append(evaluate_classifier(
                tracker, run_id, defense, model, data.x_test, data.y_test, data.num_classes, plan.settings, plan,
                substitutes, agreement,
                params={"architecture": plan.target_architecture, "epochs": plan.epochs, "defense_eps": plan.defense_eps,
                        "validation_accuracy": f"{accuracy(model, data.x_val, data.y_val):.4f}"},
            ))
        return _finish(tracker, run_id, dataset, results, test_set_uri, regression=False)


def _evaluate_surrogate(tracker: Tracker, model_uri: str, test_set: str, eps: list[float] | None, quick: bool,
                        seed: int, autoattack: bool = True, autoattack_steps: int | None = None,
                        square_queries: int | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    x, y = load_test_set(test_set)
    model_uri = resolve_model_uri(model_uri, tracker.uri)  # an alias → the version loaded and reported
    model = load_model(model_uri, tracker.uri)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{model_uri} did not load as a torch module (got {type(model).__name__})")
    model.eval()
    settings = rb.EvaluationSettings(eps=tuple(eps) if eps else ((0.1, 0.3) if quick else (0.05, 0.1, 0.2, 0.3)),
                                     pgd_steps=10 if quick else 20, seed=seed, autoattack=autoattack,
                                     autoattack_steps=autoattack_steps or (10 if quick else 100),
                                     square_queries=square_queries or (100 if quick else 5000),
                                     apgd_steps=20 if quick else 100, apgd_restarts=1 if quick else 2)
    classifier = _is_classifier(model, x, y)
    params = {"model_uri": model_uri, "test_set": test_set, "n_test": len(x), "quick": quick, "seed": seed,
              "eps": ",".join(f"{e:g}" for e in settings.eps), "task": "classification" if classifier else "regression",
              "autoattack_steps": settings.autoattack_steps, "square_queries": settings.square_queries,
              "apgd_steps": settings.apgd_steps, "apgd_restarts": settings.apgd_restarts}
    with tracker.run("robustness:surrogate", params=params,
                     tags={"advdesign.stage": "robustness-evaluation", **(tags or {})}) as run_id:
        test_set_uri = _log_test_set(tracker, run_id, x, y)
        if classifier:
            num_classes = int(model(x[:1]).shape[1])
            result = evaluate_classifier(tracker, run_id, "surrogate", model, x, y.long(), num_classes, settings,
                                         model_uri=model_uri)
        else:
            result = evaluate_regression(tracker, run_id, model, model_uri, x, y, settings)
        return _finish(tracker, run_id, f"surrogate {model_uri}", [result], test_set_uri, regression=not classifier)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(robustness_evaluation(quick="--quick" in sys.argv), indent=2))
