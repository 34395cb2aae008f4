import numpy as np
import pandas as pd
import pytest

from tasks.candidates import campaign_metrics, select_candidates


def table():
    return pd.DataFrame({
        "seed_index": [0, 0, 0, 1, 1, 2],
        "design": ["a", "b", "c", "d", "e", "f"],
        "predicted": [3.0, 5.0, 4.0, 1.0, 2.0, 9.0],
        "constraint_satisfied": [True, True, True, True, False, False],
    })


def test_top_k_per_seed_among_feasible_designs_only():
    chosen = select_candidates(table(), top_k=2, budget=100)
    assert chosen["design"].tolist() == ["b", "c", "d"]
    assert chosen["constraint_satisfied"].all()


def test_a_short_budget_gives_every_seed_its_best_first():
    chosen = select_candidates(table(), top_k=3, budget=2)
    assert sorted(chosen["design"]) == ["b", "d"]


def test_metrics_follow_their_definitions():
    verified = pd.DataFrame({
        "seed_index": [0, 0, 1, 2],
        "predicted": [2.0, 3.0, 0.5, 1.0],
        "true_score": [1.5, 0.5, -1.0, np.nan],
        "oracle_failure": [None, None, None, "invalid"],
    })
    seed_scores = np.array([1.0, 0.0, 0.0, 5.0])
    seed_predicted = np.array([1.0, 1.0, 0.0, 5.0])
    m = campaign_metrics(verified, seed_scores, seed_predicted, constraint_satisfied_fraction=0.25)
    assert m["n_seeds"] == 4 and m["n_designs"] == 4
    assert m["valid_fraction"] == 0.75
    assert m["success_rate"] == 0.25  # only seed 0 has a design truly better than itself
    # predicted better than seed: seed 0's two designs; truly better: one of them
    assert m["transfer_rate"] == 0.5
    # per-seed best true − seed: [0.5, −1.0, 0 (none valid), 0 (none)] → mean −0.125
    assert m["oracle_improvement_mean"] == pytest.approx(-0.125)
    # per-seed best predicted − seed predicted: [2.0, −0.5, 0, 0] → 0.375
    assert m["predicted_improvement_mean"] == pytest.approx(0.375)
    assert m["constraint_satisfied_fraction"] == 0.25
