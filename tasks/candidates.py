"""From a search trajectory to verified designs and the campaign's metrics (pure Python, no Prefect/MLflow).

The surrogate proposes; only the oracle disposes. Candidates are the distinct decoded designs that satisfy the
constraints, ranked by the surrogate; the oracle then scores at most ``budget`` of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from designers.base import Designer
from tasks.search.gradient import Trajectory


def decode_trajectory(designer: Designer, trajectory: Trajectory, seeds: Sequence[Any]) -> pd.DataFrame:
    """One row per distinct (seed, design) met along the search, design ≠ seed, with its constraint status.

    Columns: seed_index, seed, design, step (first step it appeared), predicted, seed_predicted,
    constraint_satisfied, constraint_violation, and the designer's constrained values (e.g. similarity).
    """
    seed_index = trajectory.seed_index.numpy()
    seed_predicted = np.full(len(seeds), np.nan)
    at_start = trajectory.step.numpy() == 0
    seed_predicted[seed_index[at_start]] = trajectory.predicted.numpy()[at_start]

    # Identical points decode identically: decode each distinct (seed, point) once.
    first_of: dict[tuple[int, bytes], int] = {}
    for i, (s, point) in enumerate(zip(seed_index.tolist(), trajectory.points.numpy())):
        first_of.setdefault((s, point.tobytes()), i)
    rows = np.array(sorted(first_of.values()), dtype=np.int64)
    decoded = designer.decode(trajectory.points[rows].float()) if len(rows) else []
    seed_keys = [designer.key(s) for s in seeds]

    table = pd.DataFrame({
        "seed_index": seed_index[rows],
        "design": [designer.key(d) if d != "" else "" for d in decoded] if decoded else [],
        "step": trajectory.step.numpy()[rows],
        "predicted": trajectory.predicted.numpy()[rows],
    })
    table["seed"] = [seed_keys[s] for s in table["seed_index"]]
    table["seed_predicted"] = seed_predicted[table["seed_index"].to_numpy()]
    table = table[(table["design"] != table["seed"]) & (table["design"] != "")]
    # A design reached several times from one seed keeps its first visit (its prediction can differ only by
    # representation, e.g. two SELFIES strings of one molecule; the first is the one the search met first).
    table = table.drop_duplicates(["seed_index", "design"]).reset_index(drop=True)

    report = designer.constraints(list(table["design"]), list(table["seed"]))
    table["constraint_violation"] = report.violations
    table["constraint_satisfied"] = report.satisfied
    for name, values in report.values.items():
        table[name] = values
    return table


def select_candidates(table: pd.DataFrame, top_k: int, budget: int) -> pd.DataFrame:
    """Top-``top_k`` constraint-satisfying designs per seed by predicted score, at most ``budget`` in all.

    When the budget is short, ranks are filled breadth-first (every seed's best before any seed's second best),
    so no seed is starved by another's many candidates.
    """
    if top_k < 1 or budget < 0:
        raise ValueError(f"top_k must be ≥ 1 and budget ≥ 0, got top_k={top_k}, budget={budget}")
    feasible = table[table["constraint_satisfied"]].sort_values(["seed_index", "predicted"], ascending=[True, False])
    feasible = feasible.assign(rank=feasible.groupby("seed_index").cumcount())
    chosen = feasible[feasible["rank"] < top_k].sort_values(["rank", "predicted"], ascending=[True, False])
    return chosen.head(budget).sort_values(["seed_index", "rank"]).reset_index(drop=True)


def campaign_metrics(
    verified: pd.DataFrame, seed_scores: np.ndarray, seed_predicted: np.ndarray, constraint_satisfied_fraction: float
) -> dict[str, float | int]:
    """The comparison numbers of one surrogate's search.

    ``verified`` has one row per oracle-checked design with columns seed_index, predicted, true_score and
    oracle_failure; every row is a constraint-satisfying design (``select_candidates`` sends no other to the
    oracle). Improvements are per seed: best (true or predicted) score among its verified designs minus
    the seed's (true or predicted) score, 0 for a seed with none, then averaged over seeds.

    Beside them, the numbers of the constrained-optimisation protocol of JT-VAE (Jin, Barzilay & Jaakkola 2018,
    "Junction Tree Variational Autoencoder for Molecular Graph Generation", ICML, Sec. 4.3), as GCPN (You et al.
    2018), MolDQN (Zhou et al. 2019) and MoFlow (Zang & Wang 2020) report them:

    * ``success_rate`` (already above) is the protocol's success in its strict reading: the fraction of seeds
      for which a verified design with similarity ≥ δ *and a true score above the seed's* was found.
    * ``feasible_design_rate``: the literal reading, the fraction of seeds with at least one verified design
      that satisfies the constraints, whether or not it scores above the seed.
    * ``successful_improvement_mean`` / ``successful_improvement_std``: over the successful seeds only (strict
      reading), the best verified design's true score minus the seed's; population std (ddof = 0), as numpy's
      default. Both are 0.0 when no seed succeeded (``success_rate`` = 0 says so). ``oracle_improvement_mean``
      is the same gain averaged over *all* seeds, failures included.
    """
    n_seeds = len(seed_scores)
    valid = verified["oracle_failure"].isna().to_numpy() if len(verified) else np.array([], dtype=bool)
    ok = verified[valid]
    seed_true = seed_scores[ok["seed_index"].to_numpy()]
    seed_pred = seed_predicted[ok["seed_index"].to_numpy()]
    predicted_better = ok["predicted"].to_numpy() > seed_pred
    truly_better = ok["true_score"].to_numpy() > seed_true

    true_gain = np.zeros(n_seeds)
    predicted_gain = np.zeros(n_seeds)
    if len(ok):
        best_true = ok.groupby("seed_index")["true_score"].max()
        best_pred = ok.groupby("seed_index")["predicted"].max()
        true_gain[best_true.index] = best_true.to_numpy() - seed_scores[best_true.index]
        predicted_gain[best_pred.index] = best_pred.to_numpy() - seed_predicted[best_pred.index]
    success = np.zeros(n_seeds, dtype=bool)
    feasible = np.zeros(n_seeds, dtype=bool)
    if len(ok):
        success[np.unique(ok["seed_index"].to_numpy()[truly_better])] = True
        feasible[ok["seed_index"].to_numpy()] = True
    successful_gain = true_gain[success]
    return {
        "n_seeds": int(n_seeds),
        "n_designs": int(len(verified)),
        "valid_fraction": float(valid.mean()) if len(valid) else 0.0,
        "constraint_satisfied_fraction": float(constraint_satisfied_fraction),
        "success_rate": float(success.mean()) if n_seeds else 0.0,
        "transfer_rate": float(truly_better[predicted_better].mean()) if predicted_better.any() else 0.0,
        "oracle_improvement_mean": float(true_gain.mean()) if n_seeds else 0.0,
        "oracle_improvement_std": float(true_gain.std()) if n_seeds else 0.0,
        "predicted_improvement_mean": float(predicted_gain.mean()) if n_seeds else 0.0,
        "improvement_gap": float((predicted_gain - true_gain).mean()) if n_seeds else 0.0,
        "n_predicted_better": int(predicted_better.sum()),
        "feasible_design_rate": float(feasible.mean()) if n_seeds else 0.0,
        "successful_improvement_mean": float(successful_gain.mean()) if success.any() else 0.0,
        "successful_improvement_std": float(successful_gain.std()) if success.any() else 0.0,
    }
