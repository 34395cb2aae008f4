"""Design with an already trained surrogate: gradient search from the seeds, every candidate checked on the oracle."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from designers import make_designer
from flows.orphans import claim_flow_run
from flows.parameters import DataParameters, DesignerParameters, SearchParameters, _Parameters
from flows.stages import choose_seeds, design_and_log, prepare_data
from tasks.result_serializer import DATA_SERIALIZER
from tasks.tracking import Tracker, load_model, resolve_model_uri


class DesignParameters(_Parameters):
    model_uri: str = Field(..., description="an MLflow model URI, e.g. models:/advdesign-molecule-surrogate@fgsm or "
                           "a version, models:/advdesign-molecule-surrogate/3 (an alias is resolved once, at the "
                           "start)")
    designer: DesignerParameters = Field(DesignerParameters(), description="the design domain and its constraints "
                                         "(must be the one the model was trained for)")
    data: DataParameters = Field(DataParameters(), description="the seeds: a seeds file, or the lowest-scoring "
                                 "designs of the labelled pool")
    search: SearchParameters = Field(SearchParameters(), description="design search and oracle verification")
    experiment: str = Field("advdesign", description="MLflow experiment name")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                                     "project's SQLite store)")
    parent_run_id: str | None = Field(None, description="nest the MLflow run under this run")


@flow(name="design-search", log_prints=True, result_serializer=DATA_SERIALIZER)
def design_search(params: DesignParameters) -> dict[str, Any]:
    """Seeds come from ``data.seeds_file`` or, as in training, from the labelled pool (cached labels).

    The run and the returned document name the model's version (``models:/NAME/N``), also when it was given by
    alias: the alias is resolved once and that version is the one loaded.

    Args:
        params: the design run: the registered surrogate to design with (``model_uri``, required), the designer
            and its constraints, the seeds, the search and its oracle budget, and the MLflow experiment. Fields
            left out take their defaults.
    """
    claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
    tracker = Tracker(params.tracking_uri, params.experiment)
    model_uri = resolve_model_uri(params.model_uri, tracker.uri)  # a missing model fails before any oracle call
    model = load_model(model_uri, tracker.uri)
    designer = make_designer(params.designer.name, **params.designer.settings())
    with tracker.run(f"design-{designer.name}", params.parent_run_id,
                     params={"model_uri": model_uri, "model_uri_requested": params.model_uri},
                     tags={"designer": designer.name, "kind": "design"}) as run_id:
        tracker.log_model_used(run_id, model_uri)
        data = prepare_data(designer, params.data) if not params.data.seeds_file else None
        seeds = choose_seeds(designer, data, params.data)
        metrics, _ = design_and_log(tracker, run_id, designer, model, seeds, params.search,
                                    params.data.oracle_batch_size)
    return {"run_id": run_id, "tracking_uri": tracker.uri, "model_uri": model_uri, "seed_errors": seeds.errors,
            **metrics}
