"""The campaign: train → design → verify for several defenses on the same data and seeds.

One parent MLflow run, a nested child run per defense, and a Prefect markdown artifact with the comparison.
The question it answers: does a robust surrogate's input gradient find real improvements (true gain close to
predicted gain, high transfer rate) where a plain surrogate's finds adversarial examples?
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from designers import make_designer
from flows.parameters import CampaignParameters
from flows.stages import _logger, choose_seeds, design_and_log, prepare_data, train_and_log
from tasks.tracking import Tracker
from tasks.training import TrainingDiverged

COMPARED = ("n_seeds", "n_designs", "valid_fraction", "constraint_satisfied_fraction", "success_rate",
            "transfer_rate", "oracle_improvement_mean", "predicted_improvement_mean")


def flat_params(params: CampaignParameters) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in params.model_dump().items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def comparison_markdown(summary: dict[str, Any]) -> str:
    header = "| defense | " + " | ".join(COMPARED) + " | validation_r2 |"
    lines = [f"# Campaign: {summary['designer']}", "", header, "|" + "---|" * (len(COMPARED) + 2)]
    for defense, result in summary["defenses"].items():
        if "error" in result:
            lines.append(f"| {defense} | failed: {result['error']} |")
            continue
        cells = [f"{result[k]:.3f}" if isinstance(result[k], float) else str(result[k]) for k in COMPARED]
        lines.append(f"| {defense} | " + " | ".join(cells) + f" | {result.get('validation_r2', float('nan')):.3f} |")
    lines += ["", f"Oracle calls: {summary['oracle_calls']}. MLflow parent run: `{summary['mlflow']['parent_run_id']}`.",
              "Only the oracle's scores count; the gap between predicted and true improvement tells an adversarial",
              "example from a design."]
    return "\n".join(lines)


@flow(name="campaign", log_prints=True)
def campaign(params: CampaignParameters = CampaignParameters()) -> dict[str, Any]:
    """Run the campaign and return its summary (the ``--json`` document)."""
    started = time.perf_counter()
    logger = _logger()
    tracker = Tracker(params.tracking_uri, params.experiment)  # fails before any work if unreachable
    designer = make_designer(params.designer.name, **params.designer.settings())
    parent = tracker.start_run(f"campaign-{designer.name}", params=flat_params(params),
                               tags={"designer": designer.name, "kind": "campaign"})
    failed = True
    try:
        data = prepare_data(designer, params.data)
        seeds = choose_seeds(designer, data, params.data)
        oracle_calls = data.oracle_calls + (len(seeds.designs) if params.data.seeds_file else 0)
        results: dict[str, dict[str, Any]] = {}
        for defense in params.defenses:
            logger.info("defense %s: training and designing", defense)
            try:
                with tracker.run(f"{designer.name}-{defense}", parent_run_id=parent,
                                 tags={"defense": defense, "designer": designer.name}) as child:
                    trained = train_and_log(tracker, child, designer, data, defense, params.surrogate,
                                            params.data.rng_seed)
                    metrics, _ = design_and_log(tracker, child, designer, trained.model, seeds, params.search)
            except TrainingDiverged as exc:
                logger.error("defense %s failed: %s", defense, exc)
                results[defense] = {"error": str(exc)}
                continue
            oracle_calls += int(metrics["oracle_calls"])
            results[defense] = {**metrics, **trained.metrics, "run_id": child, "model_uri": trained.model_uri}
            tracker.log_metrics(parent, {f"{defense}.{k}": v for k, v in metrics.items()})
        summary = {
            "designer": designer.name,
            "oracle_calls": oracle_calls,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "mlflow": {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent},
            "seed_errors": seeds.errors,
            "defenses": results,
        }
        tracker.log_metrics(parent, {"oracle_calls": oracle_calls, "wall_seconds": summary["wall_seconds"]})
        tracker.log_dict(parent, summary, "campaign.json")
        create_markdown_artifact(comparison_markdown(summary), key=f"campaign-{designer.name}",
                                 description="surrogate defenses compared on the true oracle")
        failed = any("error" in r for r in results.values())
        return summary
    finally:
        tracker.end_run(parent, failed=failed)
