"""Black-box baselines on the true oracle: a registered searcher (:mod:`tasks.search.registry`) run by the one
budgeted driver (:func:`tasks.search.driver.run_search`), and the numbers ``advdesign baselines`` reports.

They answer the campaign's control question: with the same seeds, the same constraints and the same number of
oracle calls, does a surrogate's input gradient beat search that never looks at a model? The driver enforces the
rules every method shares: only distinct, changed, constraint-satisfying designs reach the oracle (constraints
cost no call), a design is scored at most once per seed, and each seed's budget is a hard cap.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tasks.candidates import campaign_metrics
from tasks.search.anytime import CHECKPOINTS, best_found, protocol_metrics, reached_checkpoints, share_budget
from tasks.search.driver import Scorer, SearchResult, run_search
from tasks.search.base import designer_kind
from tasks.search.registry import BLACK_BOXES, make_black_box

def searcher_settings(name: str, designer: Any, seed: int, max_edits: int | None = None) -> dict[str, Any]:
    """The keyword arguments of black box ``name``: its searcher seed, and ``max_edits`` for the token searchers
    that edit tokens (Graph GA edits graphs)."""
    settings: dict[str, Any] = {"seed": seed}
    method = BLACK_BOXES[designer_kind(designer)].get(name)  # an unknown name fails in make_black_box
    if max_edits is not None and method is not None and "max_edits" in inspect.signature(method).parameters:
        settings["max_edits"] = max_edits
    return settings


def per_seed_budget(n_seeds: int, budget: int | None = None, calls_per_seed: int | None = None) -> list[int]:
    """Each seed's oracle calls: ``calls_per_seed`` each, or ``budget`` for all seeds shared out evenly.

    >>> per_seed_budget(3, budget=10), per_seed_budget(2, calls_per_seed=5)
    ([4, 3, 3], [5, 5])
    """
    if calls_per_seed is not None:
        if calls_per_seed < 0:
            raise ValueError(f"calls_per_seed must be ≥ 0, got {calls_per_seed}")
        return [int(calls_per_seed)] * n_seeds
    if budget is None or budget < 0:
        raise ValueError(f"budget must be ≥ 0, got {budget}")
    return share_budget(budget, n_seeds)


def run_black_box(name: str, designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray,
                  calls_per_seed: int | Sequence[int], *, seed: int = 0, max_edits: int | None = None,
                  score: Scorer | None = None, **driver: Any) -> SearchResult:
    """Black box ``name`` from every seed at once (one oracle call per round for all seeds; ``score`` may cut it
    into Prefect tasks), searcher seed ``seed``."""
    searcher = make_black_box(name, designer, **searcher_settings(name, designer, seed, max_edits))
    return run_search(searcher, designer, seeds, seed_scores, calls_per_seed, score, **driver)


def run_black_box_repeats(name: str, designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray,
                          calls_per_seed: int | Sequence[int], searcher_seeds: Sequence[int], *,
                          max_edits: int | None = None, score: Scorer | None = None,
                          **driver: Any) -> tuple[list[pd.DataFrame], SearchResult]:
    """Black box ``name`` once per searcher seed in ``searcher_seeds`` (the repeats), every repeat and every seed
    in one driver run, in lockstep: one oracle call per round for all of them. Returns one table per repeat
    (equal to :func:`run_black_box`'s with that seed wherever the oracle scores each design on its own) and the
    whole run's result."""
    searchers = [make_black_box(name, designer, **searcher_settings(name, designer, s, max_edits))
                 for s in searcher_seeds]
    result = run_search(searchers, designer, seeds, seed_scores, calls_per_seed, score, **driver)
    return result.by_repeat(), result


def black_box_metrics(result: SearchResult, seed_scores: np.ndarray, calls_per_seed: int | Sequence[int],
                      checkpoints: Sequence[int] = CHECKPOINTS) -> dict[str, float | int]:
    """What a black-box search achieved, over all seeds.

    * The protocol's numbers and anytime curve (:func:`tasks.search.anytime.protocol_metrics`):
      ``improvement_mean``/``_std`` (per seed max(0, best verified − seed)), ``success_rate``,
      ``search_oracle_calls_per_seed_mean``/``_max``, ``calls_per_seed`` (the largest per-seed budget),
      ``improvement_at_{c}`` and ``best_score_at_{c}`` (the best known score, the seed's counting, after ``c``
      calls per seed) at every checkpoint below the per-seed budget and at the budget itself.
    * The campaign's oracle-side numbers (:func:`tasks.candidates.campaign_metrics` without the surrogate-only
      ones): ``n_designs``, ``valid_fraction``, ``oracle_improvement_mean``/``_std`` (best verified − seed, which
      may be negative; 0 for a seed without one), ``feasible_design_rate``, ``successful_improvement_mean``/``_std``
      and ``oracle_improvement_at_{c}``, the campaign's improvement after ``c`` calls per seed.
      ``constraint_satisfied_fraction``: of the distinct changed designs checked, the fraction that satisfied
      the constraints.
    * The driver's counters: ``oracle_calls``, ``budget`` (all seeds' calls together), ``proposals``,
      ``unchanged``, ``duplicates`` (repeats), ``checked``, ``infeasible``, ``feasible``, ``not_sent``, and the
      ``rounds`` the search took.
    """
    seed_scores = np.asarray(seed_scores, dtype=float)
    n_seeds = len(seed_scores)
    budgets = np.broadcast_to(np.asarray(calls_per_seed, dtype=int), (n_seeds,))
    table, counters = result.table, result.counters
    verified = table.assign(predicted=np.nan) if len(table) else pd.DataFrame(
        columns=["seed_index", "predicted", "true_score", "oracle_failure", "call"])
    checked = int(counters.get("checked", 0))
    feasible = checked - int(counters.get("infeasible", 0))
    metrics: dict[str, Any] = campaign_metrics(verified, seed_scores, np.full(n_seeds, np.nan),
                                               feasible / checked if checked else 0.0)
    for name in ("transfer_rate", "predicted_improvement_mean", "improvement_gap", "n_predicted_better"):
        metrics.pop(name)
    per_seed = int(budgets.max()) if n_seeds else 0
    metrics.update(protocol_metrics(verified, seed_scores, per_seed, checkpoints))
    found = best_found(verified, n_seeds, reached_checkpoints(per_seed, checkpoints))
    for j, c in enumerate(reached_checkpoints(per_seed, checkpoints)):
        gain = np.where(np.isfinite(found[:, j]), found[:, j] - seed_scores, 0.0)
        metrics[f"oracle_improvement_at_{c}"] = float(gain.mean()) if n_seeds else 0.0
    metrics.update({
        "oracle_calls": int(len(table)), "budget": int(budgets.sum()),
        "proposals": int(counters.get("proposals", 0)), "unchanged": int(counters.get("unchanged", 0)),
        "duplicates": int(counters.get("repeated", 0)), "checked": checked,
        "infeasible": int(counters.get("infeasible", 0)), "feasible": feasible,
        "not_sent": int(counters.get("not_sent", 0)), "rounds": len(result.rounds),
    })
    return metrics
