"""Thin Prefect task wrappers around the pure cores: what is cached, what retries, how batches are cut.

Caching is on inputs (``cache_policy``) with results persisted under ``PREFECT_HOME``, so a campaign interrupted
and run again relabels nothing and retrains nothing it already finished. The persisted labels and surrogates are
data, not pickles (:mod:`tasks.result_serializer`). Large tensors are excluded from cache
keys and represented by a fingerprint of the data they were built from.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from designers.base import Designer, OracleResult, designer_fingerprint
from tasks import progress
from tasks.ensemble import Ensemble, train_ensemble
from tasks.pure_stages import train_surrogate
from tasks.result_serializer import DATA_SERIALIZER
from tasks.surrogate import Surrogate
from tasks.training import TrainingConfig, TrainingHistory


#: What one oracle call labels, in a task run's name.
_DESIGN_NOUNS = {"molecule": "molecules", "car": "car blueprints"}


def design_noun(designer: Any) -> str:
    """``molecules``: what the designer's oracle scores, in the plural."""
    return _DESIGN_NOUNS.get(getattr(designer, "name", ""), "designs")


def _label_run_name(parameters: dict[str, Any]) -> str:
    """``label molecules 2,001–4,000``: which designs of the batch list this task run scores."""
    designer, first, n = parameters["designer"], parameters.get("first", 0), len(parameters["designs"])
    return f"label {design_noun(designer)} {first + 1:,}–{first + n:,}"


def _train_run_name(parameters: dict[str, Any]) -> str:
    """``train fgsm``: which defense this task run trains a surrogate with (``none``: undefended)."""
    return f"train {parameters['defense_name']}"


@task(
    name="oracle",
    cache_policy=(INPUTS - "designer" - "first") + TASK_SOURCE,
    retries=2,
    retry_delay_seconds=1,
    task_run_name=_label_run_name,
    result_serializer=DATA_SERIALIZER,  # cached labels are data (JSON + npy), never a pickle
)
def oracle_batch(designer: Designer, designer_id: str, designs: Sequence[Any], first: int = 0) -> OracleResult:
    """Score one batch of designs on the true oracle (cached on the designer's settings and the designs; ``first``,
    the batch's offset in the whole list, only names the task run)."""
    return designer.oracle(list(designs))


def oracle_in_batches(designer: Designer, designs: Sequence[Any], batch_size: int) -> OracleResult:
    """Submit one task per batch (they run concurrently on the flow's task runner) and join the results."""
    designer_id = designer_fingerprint(designer)
    futures = [
        oracle_batch.submit(designer, designer_id, list(designs[i : i + batch_size]), first=i)
        for i in range(0, len(designs), batch_size)
    ]
    stage = progress.current_stage()
    # A named stage's bar stays as its line; a search round's batches come and go with the round.
    with progress.bar(len(designs), stage or f"oracle: {design_noun(designer)}", unit="design",
                      leave=stage is not None) as shown:
        parts = []
        for future in futures:
            parts.append(future.result())
            shown.update(len(parts[-1]))
    if not parts:
        return OracleResult(np.array([]), [], {})
    extras = {name: np.concatenate([p.extras[name] for p in parts]) for name in parts[0].extras}
    return OracleResult(np.concatenate([p.scores for p in parts]), [f for p in parts for f in p.failures], extras)


@task(
    name="train-surrogate",
    cache_policy=(INPUTS - "x_train" - "y_train" - "x_val" - "y_val" - "x_unlabelled") + TASK_SOURCE,
    task_run_name=_train_run_name,
    result_serializer=DATA_SERIALIZER,  # architecture + state_dict, never a pickle
)
def train_surrogate_task(
    data_id: str,
    defense_name: str,
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
    """Train one surrogate (:func:`tasks.pure_stages.train_surrogate`); cached on the data's fingerprint and the
    configuration."""
    return train_surrogate(input_shape, hidden, config, x_train, y_train, x_val, y_val, x_unlabelled, lower, upper)


def _train_ensemble_run_name(parameters: dict[str, Any]) -> str:
    """``train ensemble of 4 fgsm``."""
    return f"train ensemble of {parameters['size']} {parameters['defense_name']}"


@task(
    name="train-ensemble",
    cache_policy=(INPUTS - "x_train" - "y_train" - "x_val" - "y_val" - "x_unlabelled") + TASK_SOURCE,
    task_run_name=_train_ensemble_run_name,
    result_serializer=DATA_SERIALIZER,  # architectures + state_dicts, never a pickle
)
def train_ensemble_task(
    data_id: str,
    defense_name: str,
    size: int,
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
) -> tuple[Ensemble, list[TrainingHistory]]:
    """Train the design loop's ensemble (:func:`tasks.ensemble.train_ensemble`); cached like the surrogate."""
    return train_ensemble(input_shape, hidden, config, size, x_train, y_train, x_val, y_val, x_unlabelled,
                          lower, upper)
