"""Tune a surrogate with Optuna: learning rate, width, defense and its radius/weight, by held-out error or by
how often its designs transfer to the true oracle.

The sampler is TPE (Bergstra et al. 2011, *Algorithms for Hyper-Parameter Optimization*, NeurIPS). The search
space is define-by-run, so a radius is only asked for when its defense uses it: ``eps`` (L∞) for fgsm/pgd,
``vat_eps`` (L2) and ``vat_weight`` for vat. Its ranges are the designer's (:data:`SEARCH_SPACES`): radii live in
the designer's encoding, and a car's 12 numbers in [0, 1] are not a molecule's 55 × 27 one-hot. The objective is
the validation MAE (or MSE) of the surrogate trained on the campaign's data (:func:`flows.stages.prepare_data`,
Prefect-cached labels; training through the cached :func:`tasks.prefect_tasks.train_surrogate_task`), or
(``transfer_rate``, maximised) the fraction of its predicted-better designs that the oracle confirms, from the
campaign's design stage (:func:`flows.stages.design_and_log`) at the ``search`` section's budget.

Tracking: one parent MLflow run per invocation and a nested run per trial, opened when the trial starts (so the
design stage can log its tables and pictures into it) and closed by :class:`MlflowTrialRuns`, an Optuna callback
that uses :class:`tasks.tracking.Tracker` with explicit run ids (no active-run state, so it is
safe beside Prefect's threads). The study lives in an Optuna SQLite database next to the MLflow store
(``optuna.db``), so running again with the same study name resumes it and adds trials; the study remembers its
designer and objective, and resuming it with others is refused (their trials would not be comparable).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import optuna
from prefect import flow
from pydantic import Field, field_validator, model_validator

from advdesign.environment import PROJECT_ROOT, tracking_uri as default_tracking_uri
from designers import make_designer
from flows.orphans import claim_flow_run
from flows.parameters import (CampaignParameters, DataParameters, DefenseName, DesignerParameters,
                              SearchParameters, SurrogateParameters, _Parameters)
from flows.stages import choose_seeds, design_and_log, prepare_data
from tasks.pure_stages import DesignData, Seeds, regression_metrics, run_logger, training_config
from tasks.result_serializer import DATA_SERIALIZER
from tasks.prefect_tasks import train_surrogate_task
from tasks.tracking import Tracker
from tasks.training import TrainingDiverged

#: Objectives and whether a study minimises or maximises them.
DIRECTIONS = {"validation_mae": "minimize", "validation_mse": "minimize", "transfer_rate": "maximize",
              "oracle_improvement_mean": "maximize"}
Objective = Literal["validation_mae", "validation_mse", "transfer_rate", "oracle_improvement_mean"]
#: Objectives read off the design stage: every trial designs from the seeds and spends oracle calls. The true gain
#: is offered beside the transfer rate because the rate saturates at small budgets (1.0 in all 6 trials of the
#: quick car study, 16 designs each), where the gain still tells the trials apart (+11 … +20 km/h).
DESIGN_OBJECTIVES = ("transfer_rate", "oracle_improvement_mean")


@dataclass(frozen=True)
class SearchSpace:
    """The ranges a study draws one designer's surrogate settings from (floats log-uniform).

    Hidden-layer sizes are strings because Optuna categoricals must be plain values.
    """

    widths: tuple[str, ...]
    eps: tuple[float, float]  # L∞ radius of FGSM/PGD training, in the encoding's units
    vat_eps: tuple[float, float]  # L2 radius of the VAT perturbation
    vat_weight: tuple[float, float] = (0.1, 10.0)
    lr: tuple[float, float] = (1e-4, 1e-2)

    def suggest(self, trial: optuna.Trial, defenses: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        """The trial's defense and the surrogate settings it draws; a radius only where the defense uses it."""
        defense = trial.suggest_categorical("defense", list(defenses))
        updates: dict[str, Any] = {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "hidden": hidden_sizes(trial.suggest_categorical("width", list(self.widths))),
        }
        if defense in ("fgsm", "pgd"):
            updates["eps"] = trial.suggest_float("eps", *self.eps, log=True)
        if defense == "vat":
            updates["vat_eps"] = trial.suggest_float("vat_eps", *self.vat_eps, log=True)
            updates["vat_weight"] = trial.suggest_float("vat_weight", *self.vat_weight, log=True)
        return defense, updates

    def describe(self) -> dict[str, str]:
        """The space as MLflow parameters / JSON: ``{"eps": "0.01..0.2", "width": "64|128,64", …}``."""
        ranges = {name: f"{low:g}..{high:g}" for name, (low, high) in
                  (("lr", self.lr), ("eps", self.eps), ("vat_eps", self.vat_eps), ("vat_weight", self.vat_weight))}
        return {"width": "|".join(self.widths), **ranges}


#: Per-designer search spaces, each around the designer's defaults (flows/parameters.py).
#: Molecules: one-hot 55 × 27, FGSM ε = 0.1 L∞ and VAT ε = 1.0 L2 in the middle of their (log) ranges.
#: Cars: 12 numbers in [0, 1] with FGSM ε = 0.05 (5 % of each parameter's range) and VAT ε = 0.15; the ranges span
#: ×5 either side, up to 20 % of a range in L∞ and 0.6 in L2 (a sixth of the box's diagonal) — beyond that the
#: "neighbourhood" the surrogate is made smooth on is most of the design space. Twelve inputs and ~1,000 labels
#: want narrower layers than 1,485 one-hot inputs and 30,000 labels.
SEARCH_SPACES: dict[str, SearchSpace] = {
    "molecule": SearchSpace(widths=("64", "128,64", "256,128", "512,256"), eps=(0.01, 0.5), vat_eps=(0.1, 3.0)),
    "car": SearchSpace(widths=("64", "64,64", "128,128", "256,256"), eps=(0.01, 0.2), vat_eps=(0.03, 0.6)),
}

#: Quick tuning on top of the quick campaign's data and training (CampaignParameters.quick). Molecules train 5
#: epochs, not 20, so 8 trials take minutes; a car's training on ~170 blueprints takes seconds, so it keeps the
#: campaign's epochs and what it finds carries over. The labels are the quick campaign's (Prefect-cached).
QUICK_TUNE_SURROGATE: dict[str, dict[str, Any]] = {"molecule": {"epochs": 5}, "car": {}}
QUICK_TRIALS = 8


class TuneParameters(_Parameters):
    designer: DesignerParameters = Field(DesignerParameters(), description="the design domain and its constraints")
    data: DataParameters = Field(DataParameters(), description="the labelled data every trial trains on")
    surrogate: SurrogateParameters = Field(SurrogateParameters(), description="settings not tuned (epochs, batch)")
    search: SearchParameters = Field(SearchParameters(), description="the design stage of the design objectives "
                                     "(transfer_rate, oracle_improvement_mean; its budget: oracle calls per trial)")
    defenses: tuple[DefenseName, ...] = Field(("none", "fgsm", "vat"), description="surrogate defenses the study "
                                              "chooses from (a categorical parameter)")
    widths: tuple[str, ...] | None = Field(None, description="hidden-layer sizes to choose from, e.g. '128,64' "
                                           "(default: the designer's search space)")
    n_trials: int = Field(20, ge=1, description="trials added by this run")
    study_name: str | None = Field(None, description="Optuna study (default: advdesign-<designer>-<objective>)")
    storage: str | None = Field(None, description="Optuna storage URL (default: optuna.db beside the MLflow store)")
    objective: Objective = Field("validation_mae", description="what the study optimises: the surrogate's "
                                 "validation error (minimised) or its designs' transfer rate / true improvement "
                                 "(maximised; each trial designs and verifies on the oracle)")
    seed: int = Field(0, description="seed of the TPE sampler")
    experiment: str = Field("advdesign", description="MLflow experiment name")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                                     "project's SQLite store)")

    @field_validator("widths")
    @classmethod
    def _widths_are_layer_sizes(cls, widths: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for width in widths or ():
            try:
                sizes = hidden_sizes(width)
            except ValueError:
                sizes = ()
            if not sizes or any(size < 1 for size in sizes):
                raise ValueError(f"{width!r} is not a list of hidden-layer sizes ≥ 1 (e.g. '128,64')")
        return widths

    @model_validator(mode="before")
    @classmethod
    def _designer_defaults(cls, values: Any) -> Any:
        """Unset data, surrogate and search fields take the designer's defaults, exactly as in a campaign."""
        return CampaignParameters._designer_defaults(values)

    @model_validator(mode="after")
    def _known_space(self) -> "TuneParameters":
        if self.designer.name not in SEARCH_SPACES:
            raise ValueError(f"no tuning search space for designer {self.designer.name!r}; "
                             f"tune one of {', '.join(SEARCH_SPACES)}")
        if not self.defenses:
            raise ValueError("no defense given; choose from none, fgsm, pgd, vat")
        return self

    @property
    def space(self) -> SearchSpace:
        space = SEARCH_SPACES[self.designer.name]
        return replace(space, widths=self.widths) if self.widths else space

    @property
    def study(self) -> str:
        return self.study_name or f"advdesign-{self.designer.name}-{self.objective}"

    @classmethod
    def quick(cls, designer: str | dict | DesignerParameters = "molecule", **overrides: Any) -> "TuneParameters":
        """The quick campaign's data and training (molecules: 3,000 labelled, 5 epochs; cars: 192 labelled
        blueprints, the quick campaign's labels, 150 epochs), 8 trials: minutes on 2 cores once labelled.
        ``designer`` is a name or a whole designer section (``{"name": "car", "resolution": "fine"}``)."""
        section = DesignerParameters.model_validate({"name": designer} if isinstance(designer, str) else designer)
        campaign = CampaignParameters.quick(section.name)
        surrogate = campaign.surrogate.model_copy(update=QUICK_TUNE_SURROGATE.get(section.name, {}))
        base = {"designer": section, "data": campaign.data, "surrogate": surrogate,
                "search": campaign.search, "n_trials": QUICK_TRIALS}
        return cls(**{**base, **overrides})


def default_storage(tracking_uri: str | None = None) -> str:
    """``sqlite:///…/optuna.db`` in the folder of a SQLite MLflow store, else in the project folder."""
    uri = default_tracking_uri(tracking_uri)
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else PROJECT_ROOT
    return f"sqlite:///{folder / 'optuna.db'}"


def hidden_sizes(width: str) -> tuple[int, ...]:
    return tuple(int(part) for part in width.split(","))


#: Trial user attributes naming the process that runs the trial (``tasks.tracking.process_tags``' values).
TRIAL_PROCESS_ATTRS = ("pid", "host", "process_start")


def mark_trial_process(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, so a later run can tell a trial whose process died from a live one."""
    from tasks.tracking import HOST_TAG, PID_TAG, PROCESS_START_TAG, process_tags

    tags = process_tags()
    for attr, tag in zip(TRIAL_PROCESS_ATTRS, (PID_TAG, HOST_TAG, PROCESS_START_TAG)):
        if tag in tags:
            trial.set_user_attr(attr, tags[tag])
    _STARTED_TRIALS[trial._trial_id] = trial.study._storage


#: The trials this process has started (trial id: its storage): what a signal ends (:func:`fail_running_trials`).
_STARTED_TRIALS: dict[int, Any] = {}


def fail_running_trials(reason: str, timeout_s: float = 3.0) -> int:
    """Mark FAIL, with ``reason`` as ``killed_reason``, the trials this process started that are still RUNNING;
    the number marked. Called by the command line's signal handler (:mod:`advdesign.interrupts`) just before the
    process exits, so Ctrl-C or SIGTERM leaves no trial RUNNING. Off the main thread and bounded by ``timeout_s``:
    the signal may have cut into a storage call that holds the storage's lock; then the next ``tune`` on this host
    fails the trial (:func:`fail_orphan_trials`)."""
    import threading

    marked = []

    def mark() -> None:
        for trial_id, storage in list(_STARTED_TRIALS.items()):
            if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
                continue
            storage.set_trial_user_attr(trial_id, "killed_reason", reason)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            marked.append(trial_id)

    worker = threading.Thread(target=lambda: _quietly(mark), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return len(marked)


def _quietly(call: Any) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 — best effort at exit, see fail_running_trials
        pass


def fail_orphan_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL (with a ``killed_reason``) the trials left RUNNING by a process on this host that is gone (a
    killed ``tune``), so they neither look alive nor hold the sampler; the trial numbers marked."""
    import socket

    from tasks.tracking import process_alive

    marked = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != socket.gethostname() or not str(attrs.get("pid", "")).isdigit():
            continue  # another machine's, or from before trials recorded their process: not ours to judge
        if process_alive(int(attrs["pid"]), attrs.get("process_start")):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "killed_reason",
                                           f"process {attrs['pid']} on {attrs['host']} ended while the trial ran")
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        marked.append(trial.number)
    return marked


def open_study(params: TuneParameters, storage: str) -> tuple[optuna.Study, int]:
    """Create the study or resume it (refused if it tunes another designer or objective); also the number of
    trials it had before this run."""
    direction = DIRECTIONS[params.objective]
    existing = optuna.create_study(study_name=params.study, storage=storage, direction=direction, load_if_exists=True)
    identity = {"designer": params.designer.name, "objective": params.objective}
    if existing.trials:
        # Studies from before this record was kept hold molecule trials of an objective not recorded.
        recorded = {"designer": "molecule", "objective": None, **existing.user_attrs}
        for key, value in identity.items():
            if recorded[key] is not None and recorded[key] != value:
                raise ValueError(f"study {params.study!r} in {storage} tunes {key} {recorded[key]!r}, not "
                                 f"{value!r}; give another --study-name")
        if existing.direction.name.lower() != direction:
            raise ValueError(f"study {params.study!r} in {storage} is {existing.direction.name.lower()}d, but "
                             f"{params.objective} is {direction}d; give another --study-name")
    for key, value in identity.items():
        existing.set_user_attr(key, value)
    with warnings.catch_warnings():  # experimental in Optuna 4; optuna-dashboard labels its axes with it
        warnings.simplefilter("ignore")
        existing.set_metric_names([params.objective])
    fail_orphan_trials(existing)
    # A resumed study gets a fresh sampler seed, so its random start-up trials do not repeat the first run's.
    sampler = optuna.samplers.TPESampler(seed=params.seed + len(existing.trials))
    return optuna.load_study(study_name=params.study, storage=storage, sampler=sampler), len(existing.trials)


class MlflowTrialRuns:
    """Every trial is a nested MLflow run under ``parent_run_id``: :meth:`start` opens it when the trial starts,
    and the instance, an Optuna callback, fills and closes it when the trial has finished.

    The child run holds the trial's parameters, its objective value under ``metric_name`` and its numeric user
    attributes (e.g. R²); its status is FINISHED for a complete trial and FAILED otherwise. The parent gets
    ``best_<metric_name>`` with the trial number as the step: the study's convergence curve.
    """

    def __init__(self, tracker: Tracker, parent_run_id: str, metric_name: str) -> None:
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.metric_name = metric_name
        self.run_ids: dict[int, str] = {}
        self._open: set[str] = set()

    def start(self, study: optuna.Study, trial: optuna.Trial) -> str:
        tags = {"kind": "optuna-trial", "optuna.study_name": study.study_name,
                "optuna.trial_number": str(trial.number)}
        run_id = self.tracker.start_run(f"trial-{trial.number}", parent_run_id=self.parent_run_id, tags=tags)
        self.run_ids[trial.number] = run_id
        self._open.add(run_id)
        return run_id

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = self.run_ids.get(trial.number) or self.start(study, trial)
        self.tracker.log_params(run_id, trial.params)
        metrics = {k: v for k, v in trial.user_attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if trial.value is not None:
            metrics[self.metric_name] = trial.value
        self.tracker.log_metrics(run_id, metrics)
        tags = {"optuna.state": trial.state.name}
        if "error" in trial.user_attrs:
            tags["error"] = trial.user_attrs["error"]
        self.tracker.set_tags(run_id, tags)
        self.tracker.end_run(run_id, failed=trial.state != optuna.trial.TrialState.COMPLETE)
        self._open.discard(run_id)
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            self.tracker.log_metrics(self.parent_run_id, {f"best_{self.metric_name}": study.best_value},
                                     step=trial.number)

    def close_unfinished(self) -> None:
        """Mark FAILED the runs of trials that never reached the callback (an interrupt, an uncaught error)."""
        for run_id in list(self._open):
            self.tracker.end_run(run_id, failed=True)
            self._open.discard(run_id)


def surrogate_objective(params: TuneParameters, designer: Any, data: DesignData, runs: MlflowTrialRuns,
                        seeds: Seeds | None = None):
    """The Optuna objective: train one surrogate with the trial's settings and return its held-out error, or (with
    ``seeds``, for the design objectives) design from the seeds with it and return the verified transfer rate or
    true gain."""
    import torch

    space = params.space

    def objective(trial: optuna.Trial) -> float:
        mark_trial_process(trial)
        run_id = runs.start(trial.study, trial)
        defense, updates = space.suggest(trial, params.defenses)
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
        with torch.no_grad():
            metrics["validation_mse"] = float(((model(data.x_val) - data.y_val) ** 2).mean())
        metrics["train_seconds"] = round(time.perf_counter() - started, 3)
        if seeds is not None:
            design_metrics, _ = design_and_log(runs.tracker, run_id, designer, model, seeds, params.search,
                                               params.data.oracle_batch_size)
            metrics.update({k: design_metrics[k] for k in ("transfer_rate", "success_rate", "oracle_improvement_mean",
                                                           "n_predicted_better", "oracle_calls")})
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        value = metrics[params.objective]
        if not math.isfinite(value):
            raise TrainingDiverged(f"{params.objective} is {value}")
        return value

    return objective


@flow(name="tune-surrogate", log_prints=True, result_serializer=DATA_SERIALIZER)
def tune(params: TuneParameters = TuneParameters()) -> dict[str, Any]:
    """Add ``n_trials`` trials to the study (created or resumed) and return the summary (the ``--json``).

    Args:
        params: the whole tuning study: the Optuna study (name, storage, trials, objective), the hyper-parameter
            space searched, the designer, data, surrogate and search settings each trial starts from, the
            defenses tuned, and the MLflow experiment. Fields left out take their defaults.
    """
    started = time.perf_counter()
    logger = run_logger()
    claim_flow_run()  # an earlier run killed mid-flow is marked Crashed, not left Running
    tracker = Tracker(params.tracking_uri, params.experiment)
    storage = params.storage or default_storage(tracker.uri)
    designer = make_designer(params.designer.name, **params.designer.settings())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, trials_before = open_study(params, storage)
    space = params.space.describe()
    designs_per_trial = params.objective in DESIGN_OBJECTIVES
    parent = tracker.start_run(
        f"tune-{designer.name}", tags={"designer": designer.name, "kind": "tune", "optuna.study_name": study.study_name,
                                       "optuna.storage": storage},
        params={"n_trials": params.n_trials, "objective": params.objective, "direction": DIRECTIONS[params.objective],
                "defenses": ",".join(params.defenses), "epochs": params.surrogate.epochs,
                "trials_before": trials_before,
                **{f"space.{k}": v for k, v in space.items()},
                **{f"data.{k}": v for k, v in params.data.model_dump().items()},
                **{f"designer.{k}": v for k, v in params.designer.settings().items()},
                **({f"search.{k}": v for k, v in params.search.model_dump().items()} if designs_per_trial else {})},
    )
    failed = True
    runs = MlflowTrialRuns(tracker, parent, params.objective)
    calls_before = designer.oracle_calls
    try:
        data = prepare_data(designer, params.data)
        seeds = choose_seeds(designer, data, params.data) if designs_per_trial else None
        logger.info("study %s in %s: %d trials so far, adding %d", study.study_name, storage, trials_before,
                    params.n_trials)
        study.optimize(surrogate_objective(params, designer, data, runs, seeds), n_trials=params.n_trials,
                       callbacks=[runs], catch=(TrainingDiverged,))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RuntimeError(f"no trial of study {study.study_name!r} completed (every training diverged)")
        best = study.best_trial
        summary = {
            "designer": designer.name,
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": best.number,
            "best_trial_metrics": {k: v for k, v in best.user_attrs.items() if k != "error"},
            "objective": params.objective,
            "direction": DIRECTIONS[params.objective],
            "search_space": space,
            "n_trials": len(study.trials),
            "n_trials_this_run": len(runs.run_ids),
            "study_name": study.study_name,
            "study_storage": storage,
            "oracle_calls": data.oracle_calls + sum(t.user_attrs.get("oracle_calls", 0) for t in study.trials
                                                    if t.number in runs.run_ids),
            # Scored in this process; labels served from Prefect's cache are not.
            "oracle_calls_computed": designer.oracle_calls - calls_before,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "mlflow": {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent,
                       "trial_run_ids": {str(k): v for k, v in runs.run_ids.items()}},
        }
        tracker.log_params(parent, {f"best.{k}": v for k, v in best.params.items()})
        tracker.log_metrics(parent, {"n_trials": len(study.trials)})
        tracker.log_dict(parent, summary, "tune.json")
        failed = False
        return summary
    finally:
        runs.close_unfinished()
        tracker.end_run(parent, failed=failed)
