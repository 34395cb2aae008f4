"""Black-box baselines on the true oracle, on the campaign's data, seeds, constraints and oracle budget.

Each method is a registered searcher (:mod:`tasks.search.registry`: hill-climber, SELFIES GA, random and TPE token
edits for molecules; CMA-ES and random Gaussian perturbations for cars) run by the one budgeted driver
(:func:`tasks.search.driver.run_search`, through :func:`tasks.search.black_box.run_black_box`): every seed in one
oracle call per round, the oracle cut into Prefect tasks of ``data.oracle_batch_size`` designs
(:func:`tasks.prefect_tasks.oracle_in_batches`). The per-seed budget is ``calls_per_seed`` when given, else
``budget`` (the campaign's ``search.budget``, all seeds together) shared out evenly. The data are prepared exactly
as the campaign prepares them (same :class:`DataParameters`, same Prefect-cached oracle labels), so the seeds are
the campaign's seeds. One parent MLflow run, a nested run per method with its metrics, its per-round progress and
its designs table.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
from prefect import flow
from pydantic import Field, model_validator

from designers import make_designer
from flows.orphans import claim_flow_run
from flows.parameters import DataParameters, DesignerParameters, _Parameters
from flows.stages import choose_seeds, prepare_data
from tasks.pure_stages import run_logger
from tasks.result_serializer import DATA_SERIALIZER
from tasks.prefect_tasks import oracle_in_batches
from tasks.search.black_box import black_box_metrics, per_seed_budget, run_black_box
from tasks.search.registry import BLACK_BOXES
from tasks.tracking import Tracker

#: The kind of search space of each CLI designer (:func:`tasks.search.base.designer_kind` of its class).
DESIGNER_KINDS = {"molecule": "tokens", "car": "box"}


def black_boxes_of(designer_name: str) -> tuple[str, ...]:
    """The registered black boxes a designer supports, its default first."""
    return tuple(BLACK_BOXES[DESIGNER_KINDS[designer_name]])


class BaselineParameters(_Parameters):
    designer: DesignerParameters = Field(DesignerParameters(), description="the design domain and its constraints")
    data: DataParameters = Field(DataParameters(), description="the seeds: a seeds file, or the lowest-scoring "
                                 "designs of the labelled pool")
    methods: tuple[str, ...] | None = Field(None, description="black-box searches (default: every one the designer "
                                            "supports: hill-climber, genetic, graph-ga, random, tpe for molecules; "
                                            "cmaes, "
                                            "random for cars)")
    budget: int = Field(4_000, ge=0, description="oracle calls for all seeds together (the campaign's search.budget), "
                        "shared out evenly; --calls-per-seed overrides it")
    calls_per_seed: int | None = Field(None, ge=0, description="oracle calls per seed (default: --budget shared out "
                                       "over the seeds)")
    max_edits: int | None = Field(None, ge=1, description="molecules: at most this many SELFIES token edits per "
                                  "proposal (default: each method's own: hill-climber and genetic 2, random and tpe 3)")
    seed: int = Field(0, description="random seed of the searches")
    experiment: str = Field("advdesign", description="MLflow experiment name")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                                     "project's SQLite store)")

    @model_validator(mode="before")
    @classmethod
    def _default_methods(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("methods") is None:
            designer = values.get("designer") or {}
            name = designer.get("name", "molecule") if isinstance(designer, dict) else designer.name
            values = {**values, "methods": black_boxes_of(name) if name in DESIGNER_KINDS else ()}
        return values

    @model_validator(mode="after")
    def _methods_of_the_designer(self) -> "BaselineParameters":
        allowed = black_boxes_of(self.designer.name)
        unknown = [m for m in self.methods if m not in allowed]
        if unknown or not self.methods:
            raise ValueError(f"unknown baseline {unknown[0] if unknown else '(none)'!r} for {self.designer.name}; "
                             f"choose from {', '.join(allowed)}")
        return self


@flow(name="baselines", log_prints=True, result_serializer=DATA_SERIALIZER)
def baselines(params: BaselineParameters = BaselineParameters()) -> dict[str, Any]:
    """Run every baseline on the campaign's seeds; return the summary (the ``--json`` document).

    Args:
        params: the comparison: the search methods run, their oracle budget and edits, the designer and
            its constraints, the seeds (a file or the campaign's labelled pool), and the MLflow experiment. Fields
            left out take their defaults.
    """
    started = time.perf_counter()
    logger = run_logger()
    claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
    tracker = Tracker(params.tracking_uri, params.experiment)
    designer = make_designer(params.designer.name, **params.designer.settings())
    flat = {"budget": params.budget, "calls_per_seed": params.calls_per_seed, "max_edits": params.max_edits,
            "seed": params.seed, "methods": ",".join(params.methods),
            **{f"data.{k}": v for k, v in params.data.model_dump().items()},
            **{f"designer.{k}": v for k, v in params.designer.model_dump().items()}}
    parent = tracker.start_run(f"baselines-{designer.name}", params=flat,
                               tags={"designer": designer.name, "kind": "baselines"})
    failed = True
    try:
        data = prepare_data(designer, params.data)
        seeds = choose_seeds(designer, data, params.data)
        shares = per_seed_budget(len(seeds.designs), params.budget, params.calls_per_seed)
        score = partial(oracle_in_batches, designer, batch_size=params.data.oracle_batch_size)
        results: dict[str, dict[str, Any]] = {}
        for method in params.methods:
            logger.info("baseline %s: %d seeds, %d oracle calls", method, len(seeds.designs), sum(shares))
            with tracker.run(f"{designer.name}-{method}", parent_run_id=parent,
                             tags={"method": method, "designer": designer.name, "kind": "baseline"}) as child:
                calls_before = designer.oracle_calls
                result = run_black_box(method, designer, seeds.designs, seeds.scores, shares, seed=params.seed,
                                       max_edits=params.max_edits, score=score)
                verified = result.table
                metrics = black_box_metrics(result, seeds.scores, shares)
                metrics["oracle_calls_counted_by_designer"] = designer.oracle_calls - calls_before
                metrics["wall_seconds"] = round(result.wall_seconds, 2)
                if len(verified):
                    for name, values in designer.report([designer.parse(k) for k in verified["design"]]).items():
                        verified[name] = values
                        metrics[f"designs_{name}_mean"] = float(np.nanmean(values))
                tracker.log_params(child, {"method": method, "budget": sum(shares),
                                           "calls_per_seed": max(shares) if shares else 0,
                                           "max_edits": params.max_edits})
                tracker.log_metrics(child, metrics)
                for summary in result.rounds:
                    tracker.log_metrics(child, {k: summary[k] for k in ("best_improvement_mean",
                                                                        "cumulative_oracle_calls")},
                                        step=int(summary["round"]))
                tracker.log_table(child, verified, "designs.json")
            results[method] = {**metrics, "run_id": child}
            tracker.log_metrics(parent, {f"{method}.{k}": v for k, v in metrics.items()})
        summary = {
            "designer": designer.name,
            "budget": sum(shares),
            "calls_per_seed": params.calls_per_seed if params.calls_per_seed is not None else max(shares),
            "oracle_calls": data.oracle_calls + sum(r["oracle_calls"] for r in results.values()),
            "wall_seconds": round(time.perf_counter() - started, 2),
            "mlflow": {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent},
            "seeds": [designer.key(s) for s in seeds.designs],
            "seed_errors": seeds.errors,
            "methods": results,
        }
        tracker.log_dict(parent, summary, "baselines.json")
        failed = False
        return summary
    finally:
        tracker.end_run(parent, failed=failed)
