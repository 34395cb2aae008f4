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


def call_order(labelled_keys: Sequence[str], labelled_scores: np.ndarray, verified: pd.DataFrame
               ) -> tuple[list[str], np.ndarray]:
    """Every oracle call of a run in the order it was made: the labelled designs first (in sampling order), then the
    search's, round by round (within a round, by seed and the seed's call number). Returns the design keys and
    scores (NaN for a failure)."""
    keys, scores = list(labelled_keys), [np.asarray(labelled_scores, dtype=float)]
    if len(verified):
        ordered = verified.sort_values(["round", "seed_index", "call"], kind="stable")
        keys += [str(k) for k in ordered["design"]]
        scores.append(ordered["true_score"].to_numpy(dtype=float))
    return keys, np.concatenate(scores)


def auc_top_k(keys: Sequence[str], scores: np.ndarray, k: int = 10, max_calls: int = 10_000,
              every: int = 100) -> float:
    """PMO's sample-efficiency metric (Gao et al. 2022, "Sample efficiency matters"): the area under the curve of
    the mean of the ``k`` best distinct designs found against oracle calls, up to ``max_calls``, divided by
    ``max_calls`` (so 1.0 is a perfect score from the first call on, for scores in [0, 1]).

    As PMO computes it: the curve is read every ``every`` calls and at the last call, integrated by the trapezoid
    rule from 0 at call 0, and held flat from the last call to ``max_calls`` when the run stopped early; a failed
    call scores 0; with fewer than ``k`` designs the mean is over those found. Calls beyond ``max_calls`` do not
    count. A design scored twice (for two seeds) costs both calls but counts once among the best.

    >>> auc_top_k(["a", "b"], np.array([1.0, 1.0]), k=1, max_calls=4, every=1)  # (1/2 + 1 + 1 + 1) / 4
    0.875
    >>> auc_top_k(["a", "a"], np.array([0.5, 0.5]), k=2, max_calls=2, every=1)  # the repeat does not count twice
    0.375
    """
    keys = list(keys)[:max_calls]
    n = len(keys)
    if n == 0:
        return 0.0
    reads = [*range(every, n, every), n]
    area, previous, at = 0.0, 0.0, 0
    for calls, now in zip(reads, top_k_curve(keys, scores, reads, k)):
        area += (calls - at) * (now + previous) / 2
        previous, at = now, calls
    area += (max_calls - n) * previous
    return area / max_calls


def top_k_curve(keys: Sequence[str], scores: np.ndarray, calls: Sequence[int], k: int = 10) -> list[float]:
    """The mean of the ``k`` best distinct designs among the first ``c`` calls, for each ``c`` in ``calls`` (the
    curve under :func:`auc_top_k`; a failed call scores 0, a repeated design counts once).

    >>> top_k_curve(["a", "b", "a", "c"], np.array([0.2, np.nan, 0.2, 0.8]), [1, 3, 4], k=2)
    [0.2, 0.1, 0.5]
    """
    keys = list(keys)
    scores = np.nan_to_num(np.asarray(scores, dtype=float)[:len(keys)], nan=0.0)
    first = np.zeros(len(keys), dtype=bool)
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            first[i] = True
    distinct = np.where(first, scores, -np.inf)

    def top_mean(c: int) -> float:
        found = distinct[:c]
        found = found[np.isfinite(found)]
        return float(np.sort(found)[-k:].mean()) if len(found) else 0.0

    return [top_mean(c) for c in calls]
