"""The stages flows are made of: prepare data, train a surrogate, design with it. Each stage submits Prefect
tasks and logs through :class:`tasks.tracking.Tracker` with explicit run ids; flows only decide the order."""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from designers.base import Designer
from flows.parameters import DataParameters, SearchParameters, SurrogateParameters
from tasks.candidates import campaign_metrics, decode_trajectory, select_candidates
from tasks.prefect_tasks import data_fingerprint, oracle_in_batches, train_surrogate_task
from tasks.search import SearchConfig, gradient_search
from tasks.surrogate import Surrogate
from tasks.tracking import Tracker
from tasks.training import Defense, TrainingConfig

log = logging.getLogger("advdesign")


def run_logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow run (plain Python use of a stage)
        return log


@dataclass
class Seeds:
    designs: list[Any]
    scores: np.ndarray
    errors: list[str] = field(default_factory=list)


@dataclass
class DesignData:
    """Labelled training/validation data, unlabelled designs for VAT, and the scored seed pool."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_unlabelled: torch.Tensor
    pool: list[Any]
    pool_scores: np.ndarray
    data_id: str
    oracle_calls: int


def prepare_data(designer: Designer, params: DataParameters) -> DesignData:
    """Sample designs, label the training set and the seed pool on the oracle (batched tasks), encode them."""
    logger = run_logger()
    rng = np.random.default_rng(params.rng_seed)
    designs = designer.sample(params.n_labelled + params.n_seed_pool + params.n_unlabelled, rng)
    n_scored = params.n_labelled + params.n_seed_pool
    result = oracle_in_batches(designer, designs[:n_scored], params.oracle_batch_size)
    ok = result.valid
    if (~ok).any():
        logger.warning("%d of %d sampled designs could not be scored and are left out (first: %s)",
                       int((~ok).sum()), n_scored, next(f for f in result.failures if f))
    train_idx = np.flatnonzero(ok[: params.n_labelled])
    pool_idx = params.n_labelled + np.flatnonzero(ok[params.n_labelled :])
    x = designer.encode([designs[i] for i in train_idx])
    y = torch.tensor(result.scores[train_idx], dtype=torch.float32)
    n_val = max(1, int(round(0.1 * len(train_idx))))
    unlabelled = designs[n_scored:]
    return DesignData(
        x_train=x[n_val:], y_train=y[n_val:], x_val=x[:n_val], y_val=y[:n_val],
        x_unlabelled=designer.encode(unlabelled) if unlabelled else x[:0],
        pool=[designs[i] for i in pool_idx],
        pool_scores=result.scores[pool_idx],
        data_id=data_fingerprint(designer.name, [str(d) for d in designs], result.scores),
        oracle_calls=len(result),
    )


def read_seed_file(designer: Designer, path: str) -> tuple[list[Any], list[str]]:
    """Parse a seed file, one design per line; each bad line becomes one error line and the rest proceed."""
    designs, errors = [], []
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            designs.append(designer.parse(line))
        except ValueError as exc:
            errors.append(f"{path}:{number}: {exc}")
    return designs, errors


def split_encodable(designer: Designer, designs: list[Any]) -> tuple[list[Any], list[str]]:
    """The designs the surrogate's encoding can represent, and why each other one cannot be."""
    try:
        designer.encode(designs)
        return designs, []
    except ValueError:
        keep, errors = [], []
        for design in designs:
            try:
                designer.encode([design])
                keep.append(design)
            except ValueError as exc:
                errors.append(str(exc))
        return keep, errors


def add_verified_designs(designer: Designer, data: DesignData, verified: pd.DataFrame) -> DesignData:
    """The model-based loop's step: the designs the oracle just scored join the training set."""
    scored = verified[verified["oracle_failure"].isna()] if len(verified) else verified
    designs, _ = split_encodable(designer, [designer.parse(k) for k in scored["design"]] if len(scored) else [])
    if not designs:
        return data
    keys = {designer.key(d) for d in designs}
    scores = scored[scored["design"].isin(keys)].drop_duplicates("design").set_index("design")["true_score"]
    x_new = designer.encode(designs)
    y_new = torch.tensor([scores[designer.key(d)] for d in designs], dtype=torch.float32)
    return replace(
        data,
        x_train=torch.cat([data.x_train, x_new]), y_train=torch.cat([data.y_train, y_new]),
        data_id=data_fingerprint(data.data_id, sorted(keys), y_new),
    )


def choose_seeds(designer: Designer, data: DesignData | None, params: DataParameters) -> Seeds:
    """The user's seeds (scored on the oracle), or the lowest-scoring designs of the held-out pool."""
    logger = run_logger()
    if params.seeds_file:
        designs, errors = read_seed_file(designer, params.seeds_file)
        for error in errors:
            logger.error(error)
        designs, unrepresentable = split_encodable(designer, designs)
        for error in unrepresentable:
            errors.append(f"{params.seeds_file}: seed skipped: {error}")
            logger.error(errors[-1])
        if not designs:
            raise ValueError(f"no usable seed in {params.seeds_file}" + (f" ({errors[0]})" if errors else " (empty)"))
        result = oracle_in_batches(designer, designs, params.oracle_batch_size)
        for d, failure in zip(designs, result.failures):
            if failure:
                errors.append(f"{params.seeds_file}: seed {designer.key(d)!r} skipped: {failure}")
                logger.error(errors[-1])
        keep = result.valid
        return Seeds([d for d, k in zip(designs, keep) if k], result.scores[keep], errors)
    if data is None or len(data.pool) == 0:
        raise ValueError("no seeds: the seed pool is empty and no seeds file was given")
    order = np.argsort(data.pool_scores, kind="stable")[: params.n_seeds]
    return Seeds([data.pool[i] for i in order], data.pool_scores[order])


@dataclass
class TrainedSurrogate:
    defense: str
    model: Surrogate
    run_id: str
    model_uri: str
    metrics: dict[str, float]


def regression_metrics(model: Surrogate, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        prediction = torch.cat([model(x[i : i + 2048]) for i in range(0, len(x), 2048)]) if len(x) else x[:0, 0]
    residual = prediction - y
    total = ((y - y.mean()) ** 2).sum()
    return {
        "validation_r2": float(1 - (residual**2).sum() / total) if total > 0 else math.nan,
        "validation_mae": float(residual.abs().mean()),
    }


def training_config(params: SurrogateParameters, defense: str, seed: int) -> TrainingConfig:
    return TrainingConfig(
        epochs=params.epochs, batch_size=params.batch_size, lr=params.lr, weight_decay=params.weight_decay,
        seed=seed,
        defense=Defense(name=defense, eps=params.eps, pgd_steps=params.pgd_steps, vat_eps=params.vat_eps,
                        vat_weight=params.vat_weight),
    )


def train_and_log(
    tracker: Tracker, run_id: str, designer: Designer, data: DesignData, defense: str,
    params: SurrogateParameters, seed: int = 0,
) -> TrainedSurrogate:
    """Train one surrogate (a cached task) and log its parameters, losses, metrics and model to ``run_id``."""
    config = training_config(params, defense, seed)
    tracker.log_params(run_id, {**config.as_params(), "hidden": params.hidden, "data_id": data.data_id,
                                "n_train": len(data.x_train), "n_validation": len(data.x_val),
                                "n_unlabelled": len(data.x_unlabelled)})
    model, history = train_surrogate_task(
        data.data_id, defense, tuple(designer.input_shape), tuple(params.hidden), config,
        data.x_train, data.y_train, data.x_val, data.y_val,
        data.x_unlabelled if defense == "vat" else None, designer.lower, designer.upper,
    )
    for record in history.epochs:
        tracker.log_metrics(run_id, {"train_loss": record.train_loss, "validation_loss": record.validation_loss},
                            step=record.epoch)
    metrics = regression_metrics(model, data.x_val, data.y_val)
    tracker.log_metrics(run_id, metrics)
    model_uri = tracker.log_model(
        run_id, model, "surrogate", data.x_val[:2].numpy(),
        registered_name=f"advdesign-{designer.name}-surrogate", alias=defense,
    )
    with tempfile.TemporaryDirectory() as tmp:  # so `advdesign evaluate --model URI --test-set` can attack it
        path = Path(tmp) / "validation_set.npz"
        np.savez_compressed(path, X=data.x_val.numpy(), y=data.y_val.numpy())
        tracker.log_artifact(run_id, path)
    return TrainedSurrogate(defense, model, run_id, model_uri, metrics)


def design_and_log(
    tracker: Tracker, run_id: str, designer: Designer, model: torch.nn.Module, seeds: Seeds,
    params: SearchParameters, oracle_batch_size: int = 1_000,
) -> tuple[dict[str, float | int], pd.DataFrame]:
    """Gradient search from every seed at once, oracle verification of the top candidates, and the logs."""
    config = SearchConfig(method=params.method, steps=params.steps, step_size=params.step_size, eps=params.eps)
    tracker.log_params(run_id, {f"search.{k}": v for k, v in params.model_dump().items()})
    x0 = designer.encode(seeds.designs)
    discretize = getattr(designer, "discretize", None)
    discretize = (lambda x: x) if discretize is None else partial(discretize, reference=x0)
    trajectory = gradient_search(model, x0, config, designer.project, discretize, designer.lower, designer.upper)
    table = decode_trajectory(designer, trajectory, seeds.designs)
    satisfied_fraction = float(table["constraint_satisfied"].mean()) if len(table) else 0.0
    candidates = select_candidates(table, params.top_k, params.budget)
    result = oracle_in_batches(designer, [designer.parse(k) for k in candidates["design"]], oracle_batch_size)
    candidates["true_score"] = result.scores
    candidates["oracle_failure"] = result.failures
    for name, values in result.extras.items():
        candidates[name] = values
    seed_predicted = np.full(len(seeds.designs), np.nan)
    at_start = trajectory.step.numpy() == 0
    seed_predicted[trajectory.seed_index.numpy()[at_start]] = trajectory.predicted.numpy()[at_start]
    candidates["seed_score"] = seeds.scores[candidates["seed_index"].to_numpy()] if len(candidates) else []
    report = getattr(designer, "report", None)
    if report is not None and len(candidates):
        for name, values in report(list(candidates["design"])).items():
            candidates[name] = values
    metrics = campaign_metrics(candidates, seeds.scores, seed_predicted, satisfied_fraction)
    metrics["oracle_calls"] = len(result)
    metrics["n_unique_designs_visited"] = len(table)
    for name in ("qed", "sa", "lipinski"):
        if name in candidates and len(candidates):
            metrics[f"designs_{name}_mean"] = float(np.nanmean(candidates[name].to_numpy(dtype=float)))
    tracker.log_metrics(run_id, metrics)
    tracker.log_table(run_id, candidates, "designs.json")
    _log_best_pictures(tracker, run_id, designer, candidates, seeds)
    _log_predicted_vs_true(tracker, run_id, candidates)
    return metrics, candidates


def _log_predicted_vs_true(tracker: Tracker, run_id: str, candidates: pd.DataFrame) -> None:
    """Scatter of the surrogate's prediction against the oracle's score: adversarial examples sit far above
    the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = candidates[candidates["oracle_failure"].isna()] if len(candidates) else candidates
    figure, axis = plt.subplots(figsize=(5, 5))
    if len(ok):
        axis.scatter(ok["true_score"], ok["predicted"], s=12, alpha=0.6, label="designs")
        axis.scatter(ok["seed_score"], ok["seed_score"], s=6, c="grey", alpha=0.4, label="seeds (true)")
        low = float(min(ok["true_score"].min(), ok["predicted"].min()))
        high = float(max(ok["true_score"].max(), ok["predicted"].max()))
        axis.plot([low, high], [low, high], "k--", lw=1, label="prediction = truth")
        axis.legend(loc="upper left", fontsize=8)
    axis.set_xlabel("true score (oracle)")
    axis.set_ylabel("predicted score (surrogate)")
    axis.set_title(f"{len(ok)} verified designs")
    figure.tight_layout()
    tracker.log_figure(run_id, figure, "predicted_vs_true.png")
    plt.close(figure)


def _log_best_pictures(tracker: Tracker, run_id: str, designer: Designer, candidates: pd.DataFrame,
                       seeds: Seeds, n: int = 8) -> None:
    ok = candidates[candidates["oracle_failure"].isna()] if len(candidates) else candidates
    if not len(ok):
        return
    gains = ok.assign(gain=ok["true_score"] - ok["seed_score"])
    best = gains.loc[gains.groupby("seed_index")["gain"].idxmax()].nlargest(n, "gain")
    pairs = [(seeds.designs[i], designer.parse(d)) for i, d in zip(best["seed_index"], best["design"])]
    captions = [f"{s:.2f} -> {t:.2f}" for s, t in zip(best["seed_score"], best["true_score"])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best_designs.png"
        designer.render(pairs, str(path), captions)
        tracker.log_artifact(run_id, path)
