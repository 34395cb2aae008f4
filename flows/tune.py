"""Tune a surrogate with Optuna: learning rate, width, defense and its radius/weight, by held-out error.

The sampler is TPE (Bergstra et al. 2011, *Algorithms for Hyper-Parameter Optimization*, NeurIPS). The search
space is define-by-run, so a radius is only asked for when its defense uses it: ``eps`` (L∞) for fgsm/pgd,
``vat_eps`` (L2) and ``vat_weight`` for vat. The objective is the validation MAE (or MSE) of the surrogate trained
on the campaign's data (:func:`flows.stages.prepare_data`, Prefect-cached labels; training through the cached
:func:`tasks.prefect_tasks.train_surrogate_task`).

Tracking: one parent MLflow run per invocation and a nested run per trial, written by :class:`MlflowTrialRuns`,
an Optuna callback that uses :class:`tasks.tracking.Tracker` with explicit run ids (no active-run state, so it is
safe beside Prefect's threads). The study lives in an Optuna SQLite database next to the MLflow store
(``optuna.db``), so running again with the same study name resumes it and adds trials.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import optuna
from prefect import flow
from pydantic import Field

from advdesign.environment import PROJECT_ROOT, tracking_uri as default_tracking_uri
from designers import make_designer
from flows.parameters import (QUICK, DataParameters, DefenseName, DesignerParameters, SurrogateParameters,
                              _Parameters)
from flows.stages import DesignData, prepare_data, regression_metrics, run_logger, training_config
from tasks.prefect_tasks import train_surrogate_task
from tasks.tracking import Tracker
from tasks.training import TrainingDiverged

#: Hidden-layer sizes the study chooses from (Optuna categoricals must be plain values, hence the strings).
WIDTHS = ("64", "128,64", "256,128", "512,256")


class TuneParameters(_Parameters):
    designer: DesignerParameters = DesignerParameters()
    data: DataParameters = DataParameters()
    surrogate: SurrogateParameters = Field(SurrogateParameters(), description="settings not tuned (epochs, batch)")
    defenses: tuple[DefenseName, ...] = ("none", "fgsm", "vat")
    widths: tuple[str, ...] = WIDTHS
    n_trials: int = Field(20, ge=1, description="trials added by this run")
    study_name: str = "advdesign-surrogate"
    storage: str | None = Field(None, description="Optuna storage URL (default: optuna.db beside the MLflow store)")
    objective: Literal["validation_mae", "validation_mse"] = "validation_mae"
    seed: int = 0
    experiment: str = "advdesign"
    tracking_uri: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> "TuneParameters":
        """The campaign's quick data (3,000 labelled molecules), 5 epochs, 8 trials: minutes on 2 cores."""
        base = {"data": QUICK["molecule"]["data"], "surrogate": SurrogateParameters(epochs=5), "n_trials": 8}
        return cls(**{**base, **overrides})


def default_storage(tracking_uri: str | None = None) -> str:
    """``sqlite:///…/optuna.db`` in the folder of a SQLite MLflow store, else in the project folder."""
    uri = default_tracking_uri(tracking_uri)
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else PROJECT_ROOT
    return f"sqlite:///{folder / 'optuna.db'}"


def hidden_sizes(width: str) -> tuple[int, ...]:
    return tuple(int(part) for part in width.split(","))


class MlflowTrialRuns:
    """Optuna callback: every finished trial becomes a nested MLflow run under ``parent_run_id``.

    The child run holds the trial's parameters, its objective value under ``metric_name`` and its numeric user
    attributes (e.g. R²); its status is FINISHED for a complete trial and FAILED otherwise. The parent gets
    ``best_<metric_name>`` with the trial number as the step: the study's convergence curve.
    """

    def __init__(self, tracker: Tracker, parent_run_id: str, metric_name: str) -> None:
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.metric_name = metric_name
        self.run_ids: dict[int, str] = {}

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tags = {"kind": "optuna-trial", "optuna.study_name": study.study_name,
                "optuna.trial_number": str(trial.number), "optuna.state": trial.state.name}
        run_id = self.tracker.start_run(f"trial-{trial.number}", parent_run_id=self.parent_run_id,
                                        params=trial.params, tags=tags)
        self.run_ids[trial.number] = run_id
        metrics = {k: v for k, v in trial.user_attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if trial.value is not None:
            metrics[self.metric_name] = trial.value
        self.tracker.log_metrics(run_id, metrics)
        if "error" in trial.user_attrs:
            self.tracker.set_tags(run_id, {"error": trial.user_attrs["error"]})
        self.tracker.end_run(run_id, failed=trial.state != optuna.trial.TrialState.COMPLETE)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            self.tracker.log_metrics(self.parent_run_id, {f"best_{self.metric_name}": study.best_value},
                                     step=trial.number)


def surrogate_objective(params: TuneParameters, designer: Any, data: DesignData):
    """The Optuna objective: train one surrogate with the trial's settings, return its held-out error."""

    def objective(trial: optuna.Trial) -> float:
        defense = trial.suggest_categorical("defense", list(params.defenses))
        updates: dict[str, Any] = {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "hidden": hidden_sizes(trial.suggest_categorical("width", list(params.widths))),
        }
        if defense in ("fgsm", "pgd"):
            updates["eps"] = trial.suggest_float("eps", 0.01, 0.5, log=True)
        if defense == "vat":
            updates["vat_eps"] = trial.suggest_float("vat_eps", 0.1, 3.0, log=True)
            updates["vat_weight"] = trial.suggest_float("vat_weight", 0.1, 10.0, log=True)
        surrogate = params.surrogate.model_copy(update=updates)
        config = training_config(surrogate, defense, params.data.rng_seed)
        started = time.perf_counter()
        try:
            model, _ = train_surrogate_task(
                data.data_id, defense, tuple(designer.input_shape), tuple(surrogate.hidden), config,
                data.x_train, data.y_train, data.x_val, data.y_val,
                data.x_unlabelled if defense == "vat" else None, designer.lower, designer.upper,
            )
        except TrainingDiverged as exc:
            trial.set_user_attr("error", str(exc))
            raise
        metrics = regression_metrics(model, data.x_val, data.y_val)
        import torch

        with torch.no_grad():
            metrics["validation_mse"] = float(((model(data.x_val) - data.y_val) ** 2).mean())
        metrics["train_seconds"] = round(time.perf_counter() - started, 3)
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        value = metrics[params.objective]
        if not math.isfinite(value):
            raise TrainingDiverged(f"{params.objective} is {value}")
        return value

    return objective


@flow(name="tune-surrogate", log_prints=True)
def tune(params: TuneParameters = TuneParameters()) -> dict[str, Any]:
    """Add ``n_trials`` trials to the study (created or resumed) and return the summary (the ``--json``)."""
    started = time.perf_counter()
    logger = run_logger()
    tracker = Tracker(params.tracking_uri, params.experiment)
    storage = params.storage or default_storage(tracker.uri)
    designer = make_designer(params.designer.name, **params.designer.settings())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A resumed study gets a fresh sampler seed, so its random start-up trials do not repeat the first run's.
    existing = optuna.create_study(study_name=params.study_name, storage=storage, direction="minimize",
                                   load_if_exists=True)
    study = optuna.load_study(study_name=params.study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=params.seed + len(existing.trials)))
    parent = tracker.start_run(
        f"tune-{designer.name}", tags={"designer": designer.name, "kind": "tune", "optuna.study_name": study.study_name,
                                       "optuna.storage": storage},
        params={"n_trials": params.n_trials, "objective": params.objective, "defenses": ",".join(params.defenses),
                "widths": "|".join(params.widths), "epochs": params.surrogate.epochs,
                "trials_before": len(existing.trials),
                **{f"data.{k}": v for k, v in params.data.model_dump().items()}},
    )
    failed = True
    try:
        data = prepare_data(designer, params.data)
        callback = MlflowTrialRuns(tracker, parent, params.objective)
        logger.info("study %s in %s: %d trials so far, adding %d", study.study_name, storage, len(study.trials),
                    params.n_trials)
        study.optimize(surrogate_objective(params, designer, data), n_trials=params.n_trials,
                       callbacks=[callback], catch=(TrainingDiverged,))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RuntimeError(f"no trial of study {study.study_name!r} completed (every training diverged)")
        best = study.best_trial
        summary = {
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": best.number,
            "objective": params.objective,
            "n_trials": len(study.trials),
            "n_trials_this_run": len(callback.run_ids),
            "study_name": study.study_name,
            "study_storage": storage,
            "oracle_calls": data.oracle_calls,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "mlflow": {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent,
                       "trial_run_ids": {str(k): v for k, v in callback.run_ids.items()}},
        }
        tracker.log_params(parent, {f"best.{k}": v for k, v in best.params.items()})
        tracker.log_metrics(parent, {"n_trials": len(study.trials)})
        tracker.log_dict(parent, summary, "tune.json")
        failed = False
        return summary
    finally:
        tracker.end_run(parent, failed=failed)
