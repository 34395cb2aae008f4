"""The design-loop stage of a campaign: train an ensemble with one defense, run the loop from every seed under the
per-seed oracle budget, log every round and the verified designs.

The loop itself is :class:`tasks.search.design_loop.DesignLoop` run by the one budgeted driver
(:func:`tasks.search.driver.run_search`); this stage only wires Prefect (cached ensemble training, one oracle task
per batch), MLflow (per-round metrics, tables, pictures) and resumption (a checkpoint per round under Prefect's
home folder, so a killed run started again repeats no oracle call of a finished round).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect.settings import get_current_settings

from designers.base import Designer, designer_fingerprint
from flows.parameters import CampaignParameters
from flows.stages import log_data_inputs, log_design_pictures
from tasks import progress
from tasks.candidates import campaign_metrics
from tasks.ensemble import EnsembleMean
from tasks.prefect_tasks import oracle_in_batches, train_ensemble_task
from tasks.pure_stages import (DesignData, Seeds, data_fingerprint, regression_metrics, training_config,
                               worst_case_metrics)
from tasks.search.anytime import protocol_metrics
from tasks.search.anytime_plot import anytime_figure, curve_of, plt
from tasks.search.design_loop import DesignLoop, LoopConfig
from tasks.search.driver import SearchCheckpoint, run_search
from tasks.tracking import Tracker, applicable_params

log = logging.getLogger("advdesign")


def checkpoint_folder(fingerprint: str) -> Path:
    """Where a loop's per-round state lives: beside Prefect's cached results, one folder per setting."""
    return Path(get_current_settings().home) / "loops" / fingerprint


def loop_and_log(tracker: Tracker, run_id: str, designer: Designer, data: DesignData, seeds: Seeds, defense: str,
                 params: CampaignParameters) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the ensemble, run the loop, log everything to ``run_id``; the defense's metrics and designs table."""
    search, seed = params.search, params.data.rng_seed
    config = training_config(params.surrogate, defense, seed)
    x_unlabelled = data.x_unlabelled if defense == "vat" else None
    tracker.log_params(run_id, applicable_params(
        {**config.as_params(), "hidden": params.surrogate.hidden, "data_id": data.data_id,
         "n_train": len(data.x_train), "n_validation": len(data.x_val), "n_unlabelled": len(data.x_unlabelled)},
        defense))
    tracker.log_params(run_id, {f"search.{k}": v for k, v in search.applicable().items()})
    ensemble, histories = train_ensemble_task(
        data.data_id, defense, search.ensemble_size, tuple(designer.input_shape), tuple(params.surrogate.hidden),
        config, data.x_train, data.y_train, data.x_val, data.y_val, x_unlabelled, designer.lower, designer.upper)
    for record in histories[0].epochs:
        tracker.log_metrics(run_id, {"train_loss": record.train_loss, "validation_loss": record.validation_loss},
                            step=record.epoch)
    # The data this defense's ensemble trained on, in the child run's Datasets panel (as the parent's and the
    # one-shot runs'): training, validation and, for VAT, the unlabelled designs.
    log_data_inputs(tracker, run_id, designer, data, defense)
    ensemble_mean = regression_metrics(lambda x: ensemble(x).mean(dim=0), data.x_val, data.y_val)
    trained = {**regression_metrics(ensemble.members[0], data.x_val, data.y_val),
               **{f"ensemble_{k}": v for k, v in ensemble_mean.items()},
               **worst_case_metrics(EnsembleMean(ensemble), data, params.surrogate.eps, designer.lower,
                                    designer.upper, seed)}
    tracker.log_metrics(run_id, trained)
    model_uri = tracker.log_model(run_id, ensemble.members[0], "surrogate", data.x_val[:2].numpy(),
                                  registered_name=f"advdesign-{designer.name}-surrogate", alias=defense)

    with torch.no_grad():
        seed_predicted = ensemble(designer.encode(seeds.designs)).mean(dim=0).numpy()
    loop = LoopConfig.from_parameters(search, seed)
    searcher = DesignLoop(ensemble, config, data.x_train, data.y_train, loop, x_unlabelled, designer.lower,
                          designer.upper)
    fingerprint = data_fingerprint(
        designer_fingerprint(designer, oracle_only=False), data.data_id, defense, config.as_params(), params.surrogate.hidden,
        search.model_dump(), [designer.key(s) for s in seeds.designs], seeds.scores)

    # The whole search budget as one bar (each round's oracle batch has its own, transient one).
    budget = progress.bar(search.calls_per_seed * len(seeds.designs), f"{defense}: search budget", unit="call")

    def on_round(summary: dict[str, float], state: Any) -> None:
        budget.update(int(summary["cumulative_oracle_calls"]) - budget.n)
        tracker.log_metrics(run_id, {k: v for k, v in summary.items() if k != "round"}, step=int(summary["round"]))
        log.info("%s round %d: %d oracle calls (%d in all), best-so-far improvement %.3f", defense,
                 summary["round"], summary["oracle_calls"], summary["cumulative_oracle_calls"],
                 summary["best_improvement_mean"])

    result = run_search(searcher, designer, seeds.designs, seeds.scores, search.calls_per_seed,
                        score=partial(oracle_in_batches, designer, batch_size=params.data.oracle_batch_size),
                        checkpoint=SearchCheckpoint(checkpoint_folder(fingerprint), fingerprint), on_round=on_round,
                        patience=loop.patience)
    budget.close()
    table = result.table
    table["constraint_satisfied"] = True  # the driver sends nothing else to the oracle
    if len(table):
        for name, values in designer.report(list(table["design"])).items():
            table[name] = values
    checked = result.counters["checked"]
    satisfied = (checked - result.counters["infeasible"]) / checked if checked else 0.0
    metrics: dict[str, Any] = {
        **campaign_metrics(table, seeds.scores, seed_predicted, satisfied),
        **protocol_metrics(table, seeds.scores, search.calls_per_seed),
        **trained,
        "oracle_calls": len(table),
        "labelling_oracle_calls": data.oracle_calls,
        "rounds_run": len(result.rounds),
        "search_wall_seconds": round(result.wall_seconds, 2),
        **{f"proposals_{k}": v for k, v in result.counters.items()},
    }
    for name in ("qed", "sa", "lipinski"):
        if name in table and len(table):
            metrics[f"designs_{name}_mean"] = float(np.nanmean(table[name].to_numpy(dtype=float)))
    tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    tracker.log_table(run_id, table, "designs.json")
    log_design_pictures(tracker, run_id, designer, table, seeds, seed_predicted)
    figure = anytime_figure({defense: curve_of(metrics)}, f"{designer.name}: design loop, {defense}")
    tracker.log_figure(run_id, figure, "anytime.png")
    plt.close(figure)
    metrics["anytime"] = {str(c): v for c, v in curve_of(metrics).items()}
    metrics["model_uri"] = model_uri
    return metrics, table

