"""PMO's AUC top-k (tasks.search.anytime.auc_top_k) against a call-by-call reading of its definition, and the
order in which a run's oracle calls were made (call_order)."""

import numpy as np
import pandas as pd
import pytest

from tasks.search.anytime import auc_top_k, call_order, top_k_curve


def brute_force(keys, scores, k, max_calls, every):
    """The definition read literally: the top-k mean of distinct designs after each call, sampled every ``every``
    calls and at the last, the trapezoid rule from (0, 0), flat after the last call to ``max_calls``."""
    curve = literal_curve(keys[:max_calls], scores[:max_calls], k)
    n = len(curve)
    points = [(0, 0.0)] + [(c, curve[c - 1]) for c in [*range(every, n, every), n]]
    area = sum((c1 - c0) * (v0 + v1) / 2 for (c0, v0), (c1, v1) in zip(points, points[1:]))
    return (area + (max_calls - n) * curve[-1]) / max_calls


def literal_curve(keys, scores, k):
    """The top-k mean of the distinct designs after each call (a failure scores 0, a repeat counts once)."""
    best: dict[str, float] = {}
    curve = []
    for key, score in zip(keys, scores):
        best.setdefault(key, 0.0 if np.isnan(score) else score)
        top = sorted(best.values(), reverse=True)[:k]
        curve.append(sum(top) / len(top))
    return curve


def random_run(n):
    rng = np.random.default_rng(n)
    keys = [f"m{i}" for i in rng.integers(0, n // 2, n)]  # many repeats
    scores = np.array([hash(key) % 1000 / 1000 for key in keys])  # a design always scores the same
    scores[rng.random(n) < 0.05] = np.nan  # failures score 0
    return keys, scores


@pytest.mark.parametrize("n, every, max_calls", [(1000, 100, 1000), (737, 100, 1000), (1200, 50, 1000),
                                                 (50, 7, 80)])
def test_auc_top_10_equals_the_definition_read_call_by_call(n, every, max_calls):
    keys, scores = random_run(n)
    assert auc_top_k(keys, scores, 10, max_calls, every) == pytest.approx(brute_force(keys, scores, 10, max_calls,
                                                                                      every))


def test_the_top_10_curve_is_the_definitions_curve_where_it_is_read():
    keys, scores = random_run(737)
    calls = [1, 9, 10, 100, 512, 737]
    assert top_k_curve(keys, scores, calls) == pytest.approx([literal_curve(keys, scores, 10)[c - 1] for c in calls])


def test_finding_the_best_earlier_scores_higher_and_a_perfect_run_scores_one():
    late = np.r_[np.zeros(90), np.ones(10)]
    early = late[::-1].copy()
    keys = [str(i) for i in range(100)]
    assert auc_top_k(keys, early, max_calls=100, every=10) > auc_top_k(keys, late, max_calls=100, every=10)
    assert auc_top_k(keys, np.ones(100), k=1, max_calls=100, every=1) == pytest.approx(1 - 0.5 / 100)


def test_calls_come_labelling_first_then_round_by_round():
    table = pd.DataFrame({"seed_index": [1, 0, 0, 1], "call": [1, 1, 2, 2], "round": [1, 1, 2, 2],
                          "design": ["b1", "a1", "a2", "b2"], "true_score": [0.2, 0.1, np.nan, 0.4]})
    keys, scores = call_order(["x", "y"], np.array([0.5, 0.6]), table)
    assert keys == ["x", "y", "a1", "b1", "a2", "b2"]
    np.testing.assert_array_equal(scores, [0.5, 0.6, 0.1, 0.2, np.nan, 0.4])
