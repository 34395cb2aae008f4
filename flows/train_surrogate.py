"""Train one surrogate with one defense, logged to MLflow and registered (one version per trained model); with
``publish`` the alias named after the defense moves to that version."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from designers import make_designer
from flows.orphans import claim_flow_run
from flows.parameters import DataParameters, DefenseName, DesignerParameters, SurrogateParameters, _Parameters
from flows.stages import prepare_data, train_and_log
from tasks.result_serializer import DATA_SERIALIZER
from tasks.tracking import Tracker
from tasks.training import DEFENSES


class TrainParameters(_Parameters):
    designer: DesignerParameters = Field(DesignerParameters(), description="the design domain and its constraints")
    data: DataParameters = Field(DataParameters(), description="the labelled (and, for VAT, unlabelled) data")
    surrogate: SurrogateParameters = Field(SurrogateParameters(), description="surrogate training")
    defense: DefenseName = Field("fgsm", description=f"how the surrogate is made robust: one of {', '.join(DEFENSES)}")
    experiment: str = Field("advdesign", description="MLflow experiment name")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                                     "project's SQLite store)")
    parent_run_id: str | None = Field(None, description="nest the MLflow run under this run")
    publish: bool = Field(False, description="point the registered model's alias named after the defense at this "
                          "version (off: the version is registered, what loads by alias is unchanged)")


@flow(name="train-surrogate", log_prints=True, result_serializer=DATA_SERIALIZER)
def train_surrogate(params: TrainParameters = TrainParameters()) -> dict[str, Any]:
    """Label data (cached), train (cached), log; returns the MLflow run id, the versioned model URI
    (``models:/NAME/N``) and held-out metrics.

    Args:
        params: the whole training run: the designer and its constraints, the labelled (and, for VAT, unlabelled)
            data, the surrogate's training settings, the defense, whether to publish the defense's alias, and the
            MLflow experiment. Fields left out take their defaults.
    """
    claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
    tracker = Tracker(params.tracking_uri, params.experiment)
    designer = make_designer(params.designer.name, **params.designer.settings())
    with tracker.run(f"train-{designer.name}-{params.defense}", params.parent_run_id,
                     tags={"defense": params.defense, "designer": designer.name, "kind": "train"}) as run_id:
        data = prepare_data(designer, params.data)
        trained = train_and_log(tracker, run_id, designer, data, params.defense, params.surrogate,
                                params.data.rng_seed, publish=params.publish)
        tracker.log_metrics(run_id, {"oracle_calls": data.oracle_calls})
    return {"run_id": run_id, "model_uri": trained.model_uri, "tracking_uri": tracker.uri, **trained.metrics}
