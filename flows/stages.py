"""The stages flows are made of: prepare data, train a surrogate, design with it. Each stage submits Prefect
tasks and logs through :class:`tasks.tracking.Tracker` with explicit run ids; flows only decide the order."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from designers.base import Designer
from flows.parameters import DataParameters, SearchParameters, SurrogateParameters
from tasks.candidates import campaign_metrics, select_candidates
from tasks import progress, pure_stages
from tasks.prefect_tasks import design_noun, oracle_in_batches, train_surrogate_task
from tasks.pure_stages import (DesignData, Seeds, data_fingerprint, regression_metrics, split_encodable,
                               training_config, worst_case_metrics)
from tasks.search.driver import run_search
from tasks.search.one_shot import OneShotGradient, search_config
from tasks.surrogate import Surrogate
from tasks.tracking import Tracker, applicable_params

log = logging.getLogger("advdesign")


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


def prepare_data(designer: Designer, params: DataParameters) -> DesignData:
    """Sample designs, label the training set and the seed pool on the oracle (batched tasks), encode them."""
    with progress.stage(f"label {params.n_labelled + params.n_seed_pool:,} {design_noun(designer)}"):
        return pure_stages.prepare_data(designer, params, oracle_in_batches)


def choose_seeds(designer: Designer, data: DesignData | None, params: DataParameters) -> Seeds:
    """The user's seeds (scored on the oracle, batched tasks), or the lowest-scoring designs of the held-out pool."""
    with progress.stage("score the seeds"):
        return pure_stages.choose_seeds(designer, data, params, oracle_in_batches)


@dataclass
class TrainedSurrogate:
    defense: str
    model: Surrogate
    run_id: str
    model_uri: str
    metrics: dict[str, float]


def log_data_inputs(tracker: Tracker, run_id: str, designer: Designer, data: DesignData, defense: str) -> None:
    """The training, validation (and, for VAT, unlabelled) data as the run's MLflow dataset inputs, named by the
    data's fingerprint, so runs trained on the same labels show the same dataset."""
    def profile(x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, Any]:
        described = {"num_rows": int(len(x)), "shape": list(x.shape)}
        if y is not None and len(y):
            described.update(target_mean=round(float(y.mean()), 4), target_std=round(float(y.std()), 4))
        return described

    datasets = {"training": profile(data.x_train, data.y_train), "validation": profile(data.x_val, data.y_val)}
    if defense == "vat" and len(data.x_unlabelled):
        datasets["unlabelled"] = profile(data.x_unlabelled)
    try:
        tracker.log_datasets(run_id, datasets, data.data_id, f"oracle-labelled {designer.name} samples")
    except Exception as exc:  # noqa: BLE001 — the inputs panel is a convenience; the run's params hold data_id
        log.warning("could not log the dataset inputs of run %s: %s", run_id, str(exc).splitlines()[0] if str(exc)
                    else type(exc).__name__)


def train_and_log(
    tracker: Tracker, run_id: str, designer: Designer, data: DesignData, defense: str,
    params: SurrogateParameters, seed: int = 0, publish: bool = False,
) -> TrainedSurrogate:
    """Train one surrogate (a cached task) and log its parameters, losses, metrics and model to ``run_id``;
    ``publish`` points the defense's alias at the registered version (quick and test runs leave it)."""
    config = training_config(params, defense, seed)
    tracker.log_params(run_id, applicable_params(
        {**config.as_params(), "hidden": params.hidden, "data_id": data.data_id, "n_train": len(data.x_train),
         "n_validation": len(data.x_val), "n_unlabelled": len(data.x_unlabelled)}, defense))
    model, history = train_surrogate_task(
        data.data_id, defense, tuple(designer.input_shape), tuple(params.hidden), config,
        data.x_train, data.y_train, data.x_val, data.y_val,
        data.x_unlabelled if defense == "vat" else None, designer.lower, designer.upper,
    )
    for record in history.epochs:
        tracker.log_metrics(run_id, {"train_loss": record.train_loss, "validation_loss": record.validation_loss},
                            step=record.epoch)
    log_data_inputs(tracker, run_id, designer, data, defense)
    metrics = {**regression_metrics(model, data.x_val, data.y_val),
               **worst_case_metrics(model, data, params.eps, designer.lower, designer.upper, seed)}
    tracker.log_metrics(run_id, metrics)
    model_uri = tracker.log_model(
        run_id, model, "surrogate", data.x_val[:2].numpy(),
        registered_name=f"advdesign-{designer.name}-surrogate", alias=defense, publish=publish,
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
    """Gradient search from every seed at once, oracle verification of the top candidates, and the logs.

    The search is :class:`tasks.search.one_shot.OneShotGradient` run by the one budgeted driver: each seed's
    ``top_k`` best-predicted feasible candidates, at most ``budget`` in all (filled rank by rank, every seed's best
    before any seed's second best: :func:`tasks.candidates.select_candidates`), are the seeds' per-seed caps.
    """
    tracker.log_params(run_id, {f"search.{k}": v for k, v in params.model_dump().items()})
    searcher = OneShotGradient(model, search_config(params), batch_per_seed=params.top_k)
    ranked = searcher.rank(designer, seeds.designs)
    chosen = select_candidates(ranked.assign(constraint_satisfied=True), params.top_k, params.budget)
    caps = np.bincount(chosen["seed_index"].to_numpy(dtype=int), minlength=len(seeds.designs))
    with progress.stage(f"verify {int(caps.sum()):,} designs"):
        result = run_search(searcher, designer, seeds.designs, seeds.scores, caps,
                            score=partial(oracle_in_batches, designer, batch_size=oracle_batch_size))
    candidates = result.table
    candidates["constraint_satisfied"] = True  # the driver sends nothing else to the oracle
    if len(candidates):
        for name, values in designer.report(list(candidates["design"])).items():
            candidates[name] = values
    metrics = campaign_metrics(candidates, seeds.scores, searcher.seed_predicted, searcher.satisfied_fraction)
    metrics["oracle_calls"] = len(candidates)
    metrics["n_unique_designs_visited"] = searcher.designs_visited
    for name in ("qed", "sa", "lipinski"):
        if name in candidates and len(candidates):
            metrics[f"designs_{name}_mean"] = float(np.nanmean(candidates[name].to_numpy(dtype=float)))
    tracker.log_metrics(run_id, metrics)
    tracker.log_table(run_id, candidates, "designs.json")
    log_design_pictures(tracker, run_id, designer, candidates, seeds, searcher.seed_predicted)
    return metrics, candidates


def log_design_pictures(tracker: Tracker, run_id: str, designer: Designer, verified: pd.DataFrame,
                        seeds: Seeds, seed_predicted: np.ndarray | None = None) -> None:
    """The verified designs' pictures: the best design per seed beside its seed, predicted against true score
    (``seed_predicted``: the surrogate's prediction of each seed, to place the seeds where it put them)."""
    _log_best_pictures(tracker, run_id, designer, verified, seeds)
    figure = predicted_vs_true_figure(verified, seeds.scores, seed_predicted)
    tracker.log_figure(run_id, figure, "predicted_vs_true.png")
    import matplotlib.pyplot as plt

    plt.close(figure)


def predicted_vs_true_figure(candidates: pd.DataFrame, seed_scores: np.ndarray | None = None,
                             seed_predicted: np.ndarray | None = None) -> Any:
    """The surrogate's prediction (y) against the oracle's score (x) of every verified design, with the diagonal
    y = x where a perfect surrogate's points would lie: adversarial examples sit far above it.

    The seeds of those designs are drawn apart, never on the diagonal as if predicted perfectly: where the
    surrogate's prediction of a seed is known, as their own marker set at (seed's true score, seed's prediction),
    so a design's rise above its seed is the predicted gain and its shift to the right the true gain; a seed
    without a prediction only as a tick of its true score on the x axis (a rug): it has no predicted value.
    Returns the figure (its axis: designs, then seeds, as scatter collections)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = candidates[candidates["oracle_failure"].isna()] if len(candidates) else candidates
    figure, axis = plt.subplots(figsize=(5, 5))
    if len(ok):
        true, predicted = ok["true_score"].to_numpy(dtype=float), ok["predicted"].to_numpy(dtype=float)
        axis.scatter(true, predicted, s=12, alpha=0.6, label="designs", zorder=3)
        xs, ys = [true], [predicted]
        if seed_scores is not None:
            index = np.unique(ok["seed_index"].to_numpy(dtype=int))
            seed_true = np.asarray(seed_scores, dtype=float)[index]
            seed_pred = (np.asarray(seed_predicted, dtype=float)[index] if seed_predicted is not None
                         else np.full(len(index), np.nan))
            known = np.isfinite(seed_pred)
            if known.any():
                axis.scatter(seed_true[known], seed_pred[known], s=22, marker="s", facecolors="none",
                             edgecolors="tab:red", linewidths=0.8, label="seeds (surrogate's prediction)", zorder=2)
                xs.append(seed_true[known])
                ys.append(seed_pred[known])
            if (~known).any():
                axis.vlines(seed_true[~known], 0, 0.03, transform=axis.get_xaxis_transform(), colors="grey",
                            lw=0.8, label="seeds' true scores (no prediction)")
                xs.append(seed_true[~known])
        low = float(min(np.min(v) for v in xs + ys))
        high = float(max(np.max(v) for v in xs + ys))
        axis.plot([low, high], [low, high], "k--", lw=1, label="prediction = truth (y = x)")
        axis.legend(loc="upper left", fontsize=8)
    axis.set_xlabel("true score (oracle)")
    axis.set_ylabel("predicted score (surrogate)")
    axis.set_title(f"{len(ok)} verified designs")
    figure.tight_layout()
    return figure


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
        if designer.name == "car":  # and the flow around the best few (one small batched flow, not an oracle call)
            _log_flow_picture(tracker, run_id, designer, pairs, captions, Path(tmp) / "flow_best_designs.png")


def _log_flow_picture(tracker: Tracker, run_id: str, designer: Designer, pairs: list, captions: list[str],
                      path: Path) -> None:
    """The flow field around the seeds and their best designs (``flow_best_designs.png``); a picture that cannot
    be drawn is a warning, never a failed campaign."""
    from designers.car_flow_picture import flow_picture_artifact, score_unit

    unit = score_unit(getattr(designer, "objective", None))
    try:
        flow_picture_artifact(designer, [s for s, _ in pairs], [d for _, d in pairs], path,
                              [f"{caption} {unit}".strip() for caption in captions])
    except Exception as exc:  # noqa: BLE001 - decoration only
        log.warning("flow picture not drawn: %s: %s", type(exc).__name__, exc)
        return
    tracker.log_artifact(run_id, path)
