"""Black-box baselines on the true oracle, on the campaign's data, seeds, constraints and oracle budget.

Random search and TPE over SELFIES token edits for molecules, CMA-ES on the box encoding for cars
(:mod:`tasks.baselines`), run per seed with the same total budget
as one surrogate's verification in the campaign (``search.budget``). The data are prepared exactly as the
campaign prepares them (same :class:`DataParameters`, same Prefect-cached oracle labels), so the seeds are the
campaign's seeds. One parent MLflow run, a nested run per method with its metrics and designs table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from prefect import flow
from pydantic import Field, model_validator

from designers import make_designer
from flows.parameters import DataParameters, DesignerParameters, _Parameters
from flows.stages import choose_seeds, prepare_data, run_logger
from tasks.baselines import METHODS_BY_DESIGNER, BaselineConfig, baseline_metrics, run_baseline
from tasks.tracking import Tracker


class BaselineParameters(_Parameters):
    designer: DesignerParameters = DesignerParameters()
    data: DataParameters = DataParameters()
    methods: tuple[str, ...] | None = Field(None, description="black-box searches (default: the designer's: "
                                            "random, tpe for molecules; cmaes, random for cars)")
    budget: int = Field(4_000, ge=0, description="oracle calls for all seeds together (the campaign's search.budget)")
    max_edits: int = Field(3, ge=1, description="at most this many SELFIES token edits per proposal")
    seed: int = Field(0, description="random seed of the searches")
    experiment: str = "advdesign"
    tracking_uri: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_methods(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("methods") is None:
            designer = values.get("designer") or {}
            name = designer.get("name", "molecule") if isinstance(designer, dict) else designer.name
            values = {**values, "methods": METHODS_BY_DESIGNER.get(name, ())}
        return values

    @model_validator(mode="after")
    def _methods_of_the_designer(self) -> "BaselineParameters":
        allowed = METHODS_BY_DESIGNER[self.designer.name]
        unknown = [m for m in self.methods if m not in allowed]
        if unknown or not self.methods:
            raise ValueError(f"unknown baseline {unknown[0] if unknown else '(none)'!r} for {self.designer.name}; "
                             f"choose from {', '.join(allowed)}")
        return self


@flow(name="baselines", log_prints=True)
def baselines(params: BaselineParameters = BaselineParameters()) -> dict[str, Any]:
    """Run every baseline on the campaign's seeds; return the summary (the ``--json`` document)."""
    started = time.perf_counter()
    logger = run_logger()
    tracker = Tracker(params.tracking_uri, params.experiment)
    designer = make_designer(params.designer.name, **params.designer.settings())
    flat = {"budget": params.budget, "max_edits": params.max_edits, "seed": params.seed,
            "methods": ",".join(params.methods),
            **{f"data.{k}": v for k, v in params.data.model_dump().items()},
            **{f"designer.{k}": v for k, v in params.designer.model_dump().items()}}
    parent = tracker.start_run(f"baselines-{designer.name}", params=flat,
                               tags={"designer": designer.name, "kind": "baselines"})
    failed = True
    try:
        data = prepare_data(designer, params.data)
        seeds = choose_seeds(designer, data, params.data)
        config = BaselineConfig(max_edits=params.max_edits, seed=params.seed)
        results: dict[str, dict[str, Any]] = {}
        for method in params.methods:
            logger.info("baseline %s: %d seeds, %d oracle calls", method, len(seeds.designs), params.budget)
            with tracker.run(f"{designer.name}-{method}", parent_run_id=parent,
                             tags={"method": method, "designer": designer.name, "kind": "baseline"}) as child:
                calls_before = designer.oracle_calls
                method_started = time.perf_counter()
                verified = run_baseline(method, designer, seeds.designs, seeds.scores, params.budget, config)
                metrics = baseline_metrics(verified, seeds.scores, params.budget)
                metrics["oracle_calls_counted_by_designer"] = designer.oracle_calls - calls_before
                metrics["wall_seconds"] = round(time.perf_counter() - method_started, 2)
                report = getattr(designer, "report", None)
                if report is not None and len(verified):
                    for name, values in report(list(verified["design"])).items():
                        verified[name] = values
                        metrics[f"designs_{name}_mean"] = float(np.nanmean(values))
                tracker.log_params(child, {"method": method, "budget": params.budget, "max_edits": params.max_edits})
                tracker.log_metrics(child, metrics)
                tracker.log_table(child, verified, "designs.json")
            results[method] = {**metrics, "run_id": child}
            tracker.log_metrics(parent, {f"{method}.{k}": v for k, v in metrics.items()})
        summary = {
            "designer": designer.name,
            "budget": params.budget,
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
