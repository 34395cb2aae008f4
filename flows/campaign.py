"""The campaign: train → design → verify for several defenses on the same data and seeds.

One parent MLflow run, a nested child run per defense, and a Prefect markdown artifact with the comparison.
The question it answers: does a robust surrogate's input gradient find real improvements (true gain close to
predicted gain, high transfer rate) where a plain surrogate's finds adversarial examples?
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from designers import make_designer
from flows.loop import loop_and_log
from flows.orphans import claim_flow_run
from flows.parameters import CampaignParameters, Preset
from flows.stages import (add_verified_designs, choose_seeds, design_and_log, log_data_inputs, prepare_data,
                          train_and_log)
from tasks import progress
from tasks.pure_stages import DesignData, Seeds, run_logger
from tasks.result_serializer import DATA_SERIALIZER
from tasks.search.anytime_plot import anytime_figure, plt
from tasks.tracking import Tracker, applicable_params
from tasks.training import TrainingDiverged

COMPARED = ("n_seeds", "n_designs", "valid_fraction", "constraint_satisfied_fraction", "success_rate",
            "transfer_rate", "oracle_improvement_mean", "predicted_improvement_mean")
#: The design loop's protocol numbers, shown beside :data:`COMPARED` when the loop ran.
PROTOCOL = ("improvement_std", "search_oracle_calls_per_seed_mean", "search_oracle_calls_per_seed_max")


def flat_params(params: CampaignParameters) -> dict[str, Any]:
    """The parameters that apply: the chosen designer's own settings only, the chosen search strategy's, defense
    settings only for the defenses run (no VAT radius without VAT)."""
    out: dict[str, Any] = {}
    for section, values in params.model_dump().items():
        if section == "designer":
            values = {"name": values["name"], **params.designer.settings()}
        elif section == "search":
            values = params.search.applicable()
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return applicable_params(out, params.defenses)


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI: the tracking server's own, or for a local store the one `advdesign ui` serves
    (127.0.0.1:5000). ``workflowType=machine_learning``: MLflow 3's UI otherwise opens a fresh browser in its GenAI
    view, whatever the experiment's kind tag says."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _columns(summary: dict[str, Any]) -> tuple[str, ...]:
    ran = [r for r in summary["defenses"].values() if "error" not in r]
    return COMPARED + tuple(k for k in PROTOCOL if ran and all(k in r for r in ran))


def comparison_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per defense for Prefect's table artifact: the compared numbers, the validation R², the gap
    (predicted minus true gain) and the defense's MLflow run page."""
    mlflow, rows = summary["mlflow"], []
    for defense, result in summary["defenses"].items():
        row: dict[str, Any] = {"defense": defense}
        if "error" in result:
            row["error"] = result["error"]
        else:
            row.update({k: result[k] for k in _columns(summary)})
            row["validation_r2"] = result.get("validation_r2")
            if "predicted_improvement_mean" in result and "oracle_improvement_mean" in result:
                row["gap"] = result["predicted_improvement_mean"] - result["oracle_improvement_mean"]
        if "run_id" in result:
            row["mlflow_run"] = mlflow_run_url(mlflow["tracking_uri"], mlflow["experiment_id"], result["run_id"])
        rows.append(row)
    # numpy numbers as plain ones
    return json.loads(json.dumps(rows, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def comparison_markdown(summary: dict[str, Any]) -> str:
    columns = _columns(summary)
    mlflow = summary["mlflow"]
    header = "| defense | " + " | ".join(columns) + " | validation_r2 | MLflow run |"
    lines = [f"# Campaign: {summary['designer']} ({summary.get('search', 'one-shot')})", "", header,
             "|" + "---|" * (len(columns) + 3)]
    for defense, result in summary["defenses"].items():
        if "error" in result:
            lines.append(f"| {defense} | failed: {result['error']} |")
            continue
        cells = [f"{result[k]:.3f}" if isinstance(result[k], float) else str(result[k]) for k in columns]
        run = result.get("run_id")
        link = f"[{run[:8]}]({mlflow_run_url(mlflow['tracking_uri'], mlflow['experiment_id'], run)})" if run else ""
        lines.append(f"| {defense} | " + " | ".join(cells)
                     + f" | {result.get('validation_r2', float('nan')):.3f} | {link} |")
    parent = mlflow["parent_run_id"]
    lines += ["", f"Oracle calls: {summary['oracle_calls']}. MLflow parent run: "
              f"[{parent}]({mlflow_run_url(mlflow['tracking_uri'], mlflow['experiment_id'], parent)})"
              + ("" if mlflow["tracking_uri"].startswith(("http://", "https://")) else " (after `advdesign ui`)")
              + ".", "Only the oracle's scores count; the gap between predicted and true improvement tells an",
              "adversarial example from a design."]
    return "\n".join(lines)


def _design_rounds(tracker: Tracker, run_id: str, designer, data: DesignData, seeds: Seeds, defense: str,
                   params: CampaignParameters) -> dict[str, Any]:
    """Train → design → verify, ``params.rounds`` times, each round's verified designs joining the data.

    With one round everything is logged to ``run_id``; with more, each round is a nested run and the result
    adds ``rounds`` (per-round metrics) and ``best_improvement_mean`` (per seed, the best true score over all
    rounds minus the seed's, averaged over seeds).
    """
    best = np.full(len(seeds.designs), -np.inf)
    history, oracle_calls = [], 0
    for round_number in range(1, params.rounds + 1):
        round_run = run_id if params.rounds == 1 else tracker.start_run(
            f"round-{round_number}", parent_run_id=run_id, tags={"defense": defense, "round": str(round_number)})
        failed = True
        try:
            trained = train_and_log(tracker, round_run, designer, data, defense, params.surrogate,
                                    params.data.rng_seed)
            metrics, verified = design_and_log(tracker, round_run, designer, trained.model, seeds, params.search,
                                               params.data.oracle_batch_size)
            failed = False
        finally:
            if round_run != run_id:
                tracker.end_run(round_run, failed=failed)
        oracle_calls += int(metrics["oracle_calls"])
        scored = verified[verified["oracle_failure"].isna()] if len(verified) else verified
        if len(scored):
            per_seed = scored.groupby("seed_index")["true_score"].max()
            best[per_seed.index] = np.maximum(best[per_seed.index], per_seed.to_numpy())
        gain = np.where(np.isfinite(best), best - seeds.scores, 0.0)
        history.append({"round": round_number, **metrics, **trained.metrics, "model_uri": trained.model_uri,
                        "best_improvement_mean": float(gain.mean()), "cumulative_oracle_calls": oracle_calls})
        tracker.log_metrics(run_id, {"best_improvement_mean": float(gain.mean()),
                                     "cumulative_oracle_calls": oracle_calls}, step=round_number)
        if round_number < params.rounds:
            data = add_verified_designs(designer, data, verified)
    result = {**history[-1], "oracle_calls": oracle_calls}
    result.pop("round")
    result.pop("cumulative_oracle_calls")
    if params.rounds > 1:
        result["rounds"] = history
    return result


def _log_anytime(tracker: Tracker, run_id: str, designer: str, results: dict[str, dict[str, Any]]) -> None:
    """Every defense's anytime curve on one axis (the loop's runs only; one-shot has no curve)."""
    curves = {d: {int(c): v for c, v in r["anytime"].items()} for d, r in results.items() if "anytime" in r}
    if not curves:
        return
    figure = anytime_figure(curves, f"{designer}: design loop, best true improvement per oracle call")
    tracker.log_figure(run_id, figure, "anytime.png")
    plt.close(figure)


@flow(name="campaign", log_prints=True, result_serializer=DATA_SERIALIZER)
def campaign(params: CampaignParameters = CampaignParameters(), preset: Preset | None = None) -> dict[str, Any]:
    """Run the campaign and return its summary (the ``--json`` document).

    Args:
        params: the campaign's settings, on top of the preset: designer and constraints, data, surrogate
            training, search, the defenses compared, and the MLflow experiment. Fields left out take the
            designer's defaults and the preset's; ``data.rng_seed: null`` draws a fresh data seed per flow run
            (the scheduled deployments).
        preset: the starting point for every field ``params`` leaves out: full (a real run) or quick (the
            few-minute demo). Beside ``params``, so ``--param params='{"data": {"rng_seed": 1}}'`` on a quick
            deployment stays quick (Prefect replaces a deployment's parameters one top-level name at a time).
            null: ``params.preset`` (full unless set there).
    """
    started = time.perf_counter()
    logger = run_logger()
    claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
    # The top-level preset under params' overrides (a deployment's preset survives a partial --param params=…).
    params = params.with_preset(preset)
    # data.rng_seed null (the scheduled deployments): this flow run's own seed, logged as the seed used.
    params, seed_source = params.with_data_seed()
    if seed_source:
        logger.info("data seed %d (%s)", params.data.rng_seed, seed_source)
        progress.say(f"data seed {params.data.rng_seed} ({seed_source})")
    tracker = Tracker(params.tracking_uri, params.experiment)  # fails before any work if unreachable
    designer = make_designer(params.designer.name, **params.designer.settings())
    parent = tracker.start_run(f"campaign-{designer.name}", params=flat_params(params),
                               tags={"designer": designer.name, "kind": "campaign",
                                     **({"data_seed_from": seed_source} if seed_source else {})})
    failed = True
    try:
        data = prepare_data(designer, params.data)
        # The campaign's data on its own run's Datasets panel (the unlabelled designs when VAT uses them).
        log_data_inputs(tracker, parent, designer, data, "vat" if "vat" in params.defenses else "none")
        seeds = choose_seeds(designer, data, params.data)
        oracle_calls = data.oracle_calls + (len(seeds.designs) if params.data.seeds_file else 0)
        results: dict[str, dict[str, Any]] = {}
        for defense in params.defenses:
            logger.info("defense %s: training and designing", defense)
            progress.say(f"defense {defense}: training, then designing from {len(seeds.designs)} seeds")
            try:
                with tracker.run(f"{designer.name}-{defense}", parent_run_id=parent,
                                 tags={"defense": defense, "designer": designer.name}) as child:
                    if params.search.strategy == "loop":
                        result, _ = loop_and_log(tracker, child, designer, data, seeds, defense, params)
                    else:
                        result = _design_rounds(tracker, child, designer, data, seeds, defense, params)
            except TrainingDiverged as exc:
                logger.error("defense %s failed: %s", defense, exc)
                results[defense] = {"error": str(exc)}
                continue
            oracle_calls += int(result["oracle_calls"])
            results[defense] = {**result, "run_id": child}
            tracker.log_metrics(parent, {f"{defense}.{k}": v for k, v in result.items()
                                         if isinstance(v, (int, float))})
        summary = {
            "designer": designer.name,
            "objective": getattr(designer, "objective", None),
            "search": params.search.strategy,
            "preset": params.preset,
            "rng_seed": params.data.rng_seed,
            "oracle_calls": oracle_calls,
            "labelling_oracle_calls": data.oracle_calls,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "mlflow": {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent},
            "seed_errors": seeds.errors,
            "defenses": results,
        }
        tracker.log_metrics(parent, {"oracle_calls": oracle_calls, "wall_seconds": summary["wall_seconds"]})
        tracker.log_dict(parent, summary, "campaign.json")
        _log_anytime(tracker, parent, designer.name, results)
        create_markdown_artifact(comparison_markdown(summary), key=f"campaign-{designer.name}",
                                 description="surrogate defenses compared on the true oracle")
        create_table_artifact(comparison_table(summary), key=f"campaign-{designer.name}-table",
                              description="surrogate defenses compared on the true oracle, with their MLflow runs")
        failed = any("error" in r for r in results.values())
        return summary
    finally:
        tracker.end_run(parent, failed=failed)
