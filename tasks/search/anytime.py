"""Reading a search's verified designs as the user judges them: the best true design per oracle call.

Every function takes the driver's table (:class:`tasks.search.driver.SearchResult`): one row per oracle call
with seed_index, call (the seed's call number, 1-based), true_score and oracle_failure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: Checkpoints (oracle calls per seed) of the anytime curve, where the budget reaches them.
CHECKPOINTS = (10, 30, 100, 300, 1000)


def share_budget(budget: int, n_seeds: int) -> list[int]:
    """``budget`` oracle calls shared out over seeds as evenly as possible (the first seeds get the remainder).

    >>> share_budget(10, 3)
    [4, 3, 3]
    """
    base, extra = divmod(budget, n_seeds)
    return [base + (1 if i < extra else 0) for i in range(n_seeds)]


def best_found(verified: pd.DataFrame, n_seeds: int, checkpoints: Sequence[int]) -> np.ndarray:
    """``(n_seeds, len(checkpoints))``: per seed, the best true score among its first ``c`` oracle calls,
    ``-inf`` where none of them was scored."""
    found = np.full((n_seeds, len(checkpoints)), -np.inf)
    ok = verified[verified["oracle_failure"].isna()] if len(verified) else verified
    for j, c in enumerate(checkpoints):
        if len(ok):
            upto = ok[ok["call"] <= c].groupby("seed_index")["true_score"].max()
            found[upto.index.to_numpy(dtype=int), j] = upto.to_numpy()
    return found


def best_so_far(verified: pd.DataFrame, seed_scores: np.ndarray, checkpoints: Sequence[int]) -> np.ndarray:
    """The anytime curve: ``(n_seeds, len(checkpoints))``, per seed the best true score known after its first
    ``c`` oracle calls, the seed itself counting as known (never below the seed's score, never decreasing)."""
    seed_scores = np.asarray(seed_scores, dtype=float)
    return np.maximum(best_found(verified, len(seed_scores), checkpoints), seed_scores[:, None])


def reached_checkpoints(calls_per_seed: int, checkpoints: Sequence[int] = CHECKPOINTS) -> list[int]:
    """The checkpoints below the per-seed budget, and the budget itself."""
    return sorted({*(c for c in checkpoints if c < calls_per_seed), int(calls_per_seed)})


def protocol_metrics(verified: pd.DataFrame, seed_scores: np.ndarray, calls_per_seed: int,
                     checkpoints: Sequence[int] = CHECKPOINTS) -> dict[str, float | int]:
    """The constrained-optimisation protocol's numbers over **all** seeds and the anytime curve.

    improvement per seed = max(0, best verified feasible score − seed score) (every verified design is
    feasible: the driver sends no other); ``improvement_mean``/``improvement_std`` over all seeds;
    ``success_rate`` the fraction of seeds with a verified design scoring above the seed;
    ``search_oracle_calls_per_seed_mean``/``_max``; ``improvement_at_{c}`` the mean improvement after ``c``
    calls per seed for every reached checkpoint.

    >>> table = pd.DataFrame({"seed_index": [0, 0, 1], "call": [1, 2, 1], "true_score": [1.0, 3.0, -1.0],
    ...                       "oracle_failure": [None, None, None]})
    >>> m = protocol_metrics(table, np.array([0.0, 0.0]), 2, checkpoints=(1,))
    >>> m["improvement_mean"], m["success_rate"], m["improvement_at_1"]
    (1.5, 0.5, 0.5)
    """
    seed_scores = np.asarray(seed_scores, dtype=float)
    n = len(seed_scores)
    reached = reached_checkpoints(calls_per_seed, checkpoints)
    best = best_so_far(verified, seed_scores, reached)
    gain = best - seed_scores[:, None]
    calls = np.bincount(verified["seed_index"].to_numpy(dtype=int), minlength=n) if len(verified) else np.zeros(n)
    metrics: dict[str, float | int] = {
        "n_seeds": int(n),
        "improvement_mean": float(gain[:, -1].mean()),
        "improvement_std": float(gain[:, -1].std()),
        "success_rate": float((gain[:, -1] > 0).mean()),
        "search_oracle_calls_per_seed_mean": float(calls.mean()),
        "search_oracle_calls_per_seed_max": int(calls.max()) if n else 0,
        "calls_per_seed": int(calls_per_seed),
    }
    for j, c in enumerate(reached):
        metrics[f"improvement_at_{c}"] = float(gain[:, j].mean())
        metrics[f"best_score_at_{c}"] = float(best[:, j].mean())
    return metrics
