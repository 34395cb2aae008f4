"""Continuous baselines run in lockstep (tasks.baselines.continuous_baseline_lockstep): the same designs and
scores as one search after another, in far fewer oracle calls (what a GPU car oracle pays for)."""

import numpy as np
import pandas as pd
import pytest

from designers.base import OracleResult
from tasks.baselines import BaselineConfig, continuous_baseline_lockstep, random_perturbation_search, run_baseline


def cheap_car(monkeypatch):
    """A car designer whose oracle is a smooth function of the blueprint (no flow), counting its calls."""
    from designers.car import CarDesigner

    designer = CarDesigner(resolution="smoke", compile=False, threads=1, max_change_from_seed_m=0.3)
    calls = []

    def oracle(designs):
        designer.oracle_calls += len(designs)
        calls.append(len(designs))
        x = designer.encode(list(designs)).numpy()
        return OracleResult(100 + 10 * np.sin(3 * x).sum(axis=1), [None] * len(designs))

    monkeypatch.setattr(designer, "oracle", oracle)
    return designer, calls


@pytest.mark.parametrize("method", ["cmaes", "random"])
def test_lockstep_gives_every_repeat_the_one_by_one_table_in_fewer_oracle_calls(method, monkeypatch):
    designer, calls = cheap_car(monkeypatch)
    seeds = designer.sample(2, np.random.default_rng(1))
    scores = designer.oracle(seeds).scores
    calls.clear()
    designer.oracle_calls = 0
    alone = [run_baseline(method, designer, seeds, scores, budget=60, config=BaselineConfig(seed=r)) for r in (0, 1)]
    alone_calls = len(calls)
    calls.clear()
    together = continuous_baseline_lockstep(method, designer, seeds, scores, budget=60, searcher_seeds=[0, 1])
    assert designer.oracle_calls == 2 * 2 * 60 and sum(calls) == 2 * 60
    assert len(calls) < alone_calls / 2  # all four searches share each call
    columns = ["seed_index", "seed", "design", "true_score", "call"]
    for one, other in zip(alone, together):
        pd.testing.assert_frame_equal(one[columns], other[columns])
    assert not together[0]["design"].equals(together[1]["design"])  # the repeats do differ


def test_random_perturbations_do_not_depend_on_the_batch_size(monkeypatch):
    designer, calls = cheap_car(monkeypatch)
    seeds = designer.sample(2, np.random.default_rng(2))
    scores = np.array([90.0, 95.0])
    small = random_perturbation_search(designer, seeds, scores, 50, seed=4, batch_size=16)
    calls.clear()
    large = random_perturbation_search(designer, seeds, scores, 50, seed=4, batch_size=512)
    assert len(calls) == 2  # one oracle call per start
    pd.testing.assert_frame_equal(small[["design", "true_score", "call"]], large[["design", "true_score", "call"]])
