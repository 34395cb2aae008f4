"""The pure cores of the flows' stages (:mod:`flows.stages`): data preparation, seed choice, surrogate training
and its metrics, with neither Prefect nor MLflow imported.

The flows call these through Prefect tasks (cached, retried, batched: :mod:`tasks.prefect_tasks`); a script on a
machine without Prefect (``benchmarks/equal_budget.py --no-orchestration`` on a bare GPU machine) calls them
directly, with the designer's own oracle as the labeller (:func:`label_directly`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from designers.base import Designer, OracleResult, designer_fingerprint
from tasks.surrogate import Surrogate
from tasks.training import Defense, TrainingConfig, TrainingHistory, train_model

log = logging.getLogger("advdesign")

#: ``label(designer, designs, batch_size)``: the oracle's scores of ``designs`` (one OracleResult, in order).
Labeller = Callable[[Designer, Sequence[Any], int], OracleResult]


def run_logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow run (plain Python use of a stage), or no Prefect installed
        return log


def label_directly(designer: Designer, designs: Sequence[Any], batch_size: int) -> OracleResult:
    """The designer's oracle on all ``designs`` in one call (it cuts them into its own chunks): no task, no
    cache. ``batch_size`` (the flows' designs per oracle task) is not used."""
    return designer.oracle(list(designs))


class StoredLabels:
    """A labeller that keeps its answers in ``folder``: asked again for the same designs by the same oracle
    (:func:`designers.base.designer_fingerprint`), it reads them back and calls no oracle.

    For scripts without Prefect's cache that resume (``benchmarks/equal_budget.py --resume-dir``): a restart then
    repeats no labelling call, and the loops' checkpoints, which name their training labels' exact bytes, are
    found again even where the oracle, run once more, would differ in the last bits (the car's flow solver on
    another machine's CPU or on a GPU). The answers are JSON, written atomically; one file per set of designs.
    """

    def __init__(self, folder: str | Path, label: Labeller) -> None:
        self.folder, self.label = Path(folder), label

    def __call__(self, designer: Designer, designs: Sequence[Any], batch_size: int) -> OracleResult:
        oracle, keys = designer_fingerprint(designer), [designer.key(d) for d in designs]
        path = self.folder / f"labels-{data_fingerprint(oracle, keys)}.json"
        if path.is_file():
            return _result_from_json(json.loads(path.read_text()))
        result = self.label(designer, designs, batch_size)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"designer": oracle, "keys": keys, **_result_json(result)}))
        os.replace(tmp, path)
        return result


def _result_json(result: OracleResult) -> dict[str, Any]:
    """An oracle result as JSON, with each array's dtype: read back, its bytes are the same."""
    arrays = {"scores": np.asarray(result.scores), **{f"extras.{k}": np.asarray(v) for k, v in result.extras.items()}}
    return {"failures": list(result.failures),
            "arrays": {name: {"dtype": str(a.dtype), "values": a.tolist()} for name, a in arrays.items()}}


def _result_from_json(stored: dict[str, Any]) -> OracleResult:
    arrays = {name: np.asarray(a["values"], dtype=a["dtype"]) for name, a in stored["arrays"].items()}
    return OracleResult(arrays.pop("scores"), stored["failures"],
                        {name.removeprefix("extras."): a for name, a in arrays.items()})


def data_fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, default=str).encode())
    return digest.hexdigest()[:16]


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


def prepare_data(designer: Designer, params: Any, label: Labeller) -> DesignData:
    """Sample designs, label the training set and the seed pool with ``label``, encode them. ``params``: a
    :class:`flows.parameters.DataParameters` (n_labelled, n_seed_pool, n_unlabelled, oracle_batch_size,
    rng_seed)."""
    logger = run_logger()
    rng = np.random.default_rng(params.rng_seed)
    designs = designer.sample(params.n_labelled + params.n_seed_pool + params.n_unlabelled, rng)
    n_scored = params.n_labelled + params.n_seed_pool
    result = label(designer, designs[:n_scored], params.oracle_batch_size)
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
            errors.append(f"{path}:{number}: {_clipped(str(exc))}")
    return designs, errors


def _clipped(text: str, limit: int = 200) -> str:
    """A message that quotes a line of a user's file, cut to ``limit`` characters: a 4 KB line is not copied into
    the logs, MLflow and the JSON."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def choose_seeds(designer: Designer, data: DesignData | None, params: Any, label: Labeller) -> Seeds:
    """The user's seeds (scored with ``label``), or the lowest-scoring designs of the held-out pool (the
    constrained-optimisation protocol) — or, **de novo** (no seeds file and a similarity bound δ = 0: nothing to stay
    near), the best-scoring designs of the labelled pool, from which the search optimises freely."""
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
        result = label(designer, designs, params.oracle_batch_size)
        for d, failure in zip(designs, result.failures):
            if failure:
                errors.append(f"{params.seeds_file}: seed {designer.key(d)!r} skipped: {failure}")
                logger.error(errors[-1])
        keep = result.valid
        return Seeds([d for d, k in zip(designs, keep) if k], result.scores[keep], errors)
    if data is None or len(data.pool) == 0:
        raise ValueError("no seeds: the seed pool is empty and no seeds file was given")
    de_novo = getattr(designer, "similarity_threshold", None) == 0
    scores = np.nan_to_num(data.pool_scores, nan=np.inf if not de_novo else -np.inf)
    order = np.argsort(-scores if de_novo else scores, kind="stable")[: params.n_seeds]
    if de_novo:
        logger.info("de novo: similarity bound 0 and no seeds file; starting from the %d best designs of the "
                    "labelled pool", len(order))
    return Seeds([data.pool[i] for i in order], data.pool_scores[order])


def regression_metrics(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
                       ) -> dict[str, float]:
    """Validation R² and MAE of ``model``'s predictions (a surrogate, or an ensemble's mean)."""
    with torch.no_grad():
        prediction = torch.cat([model(x[i : i + 2048]) for i in range(0, len(x), 2048)]) if len(x) else x[:0, 0]
    residual = prediction - y
    total = ((y - y.mean()) ** 2).sum()
    return {
        "validation_r2": float(1 - (residual**2).sum() / total) if total > 0 else math.nan,
        "validation_mae": float(residual.abs().mean()),
    }


def worst_case_metrics(model: torch.nn.Module, data: DesignData, eps: float, lower: float | torch.Tensor,
                       upper: float | torch.Tensor, seed: int = 0, n: int = 512) -> dict[str, float]:
    """The campaign's worst-case probe of a defense's surrogate (or ensemble mean) on up to ``n`` validation
    designs: MAE clean and under APGD at the training ε (:func:`tasks.robustness.worst_case_error`), the same
    ε for every defense so that they compare."""
    from tasks.robustness import worst_case_error

    if not len(data.x_val) or eps <= 0:
        return {}
    probe = worst_case_error(model, data.x_val[:n], data.y_val[:n], eps, lower=lower, upper=upper, seed=seed)
    return {f"probe_{k}": v for k, v in probe.items()}


def training_config(params: Any, defense: str, seed: int) -> TrainingConfig:
    """``params``: a :class:`flows.parameters.SurrogateParameters` (an object without ``trades_beta`` or
    ``coms_limit`` gets :class:`Defense`'s defaults for them)."""
    return TrainingConfig(
        epochs=params.epochs, batch_size=params.batch_size, lr=params.lr, weight_decay=params.weight_decay,
        seed=seed,
        defense=Defense(name=defense, eps=params.eps, pgd_steps=params.pgd_steps, vat_eps=params.vat_eps,
                        vat_weight=params.vat_weight,
                        trades_beta=getattr(params, "trades_beta", Defense.trades_beta),
                        coms_limit=getattr(params, "coms_limit", Defense.coms_limit)),
    )


def train_surrogate(
    input_shape: tuple[int, ...],
    hidden: tuple[int, ...],
    config: TrainingConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    x_unlabelled: torch.Tensor | None,
    lower: float | torch.Tensor = 0.0,
    upper: float | torch.Tensor = 1.0,
) -> tuple[Surrogate, TrainingHistory]:
    """Train one regression surrogate (what :func:`tasks.prefect_tasks.train_surrogate_task` caches)."""
    model = Surrogate(input_shape, hidden, seed=config.seed)
    model.set_target_scale(y_train)
    history = train_model(model, x_train, y_train, x_val, y_val, config, "regression", x_unlabelled, lower, upper)
    return model, history
