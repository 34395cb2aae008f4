"""Lockstep is a property of the driver: every start of a search shares each round's oracle call, and given one
searcher per repeat, :func:`tasks.search.driver.run_search` lets a search's repeats share them too — the same designs
and scores as one search after another, in far fewer oracle calls (what a GPU car oracle pays for)."""

import numpy as np
import pandas as pd
import pytest

from designers import make_designer
from designers.base import OracleResult
from tasks.search.black_box import run_black_box, run_black_box_repeats


def cheap_car(monkeypatch):
    """A car designer whose oracle is a smooth function of the blueprint (no flow), counting its calls."""
    from designers.car import CarDesigner

    designer = CarDesigner(resolution="smoke", compile=False, threads=1, max_change_from_seed_m=0.3)
    calls = []

    def oracle(designs):
        calls.append(len(designs))
        x = designer.encode(list(designs)).numpy()
        return OracleResult(100 + 10 * np.sin(3 * x).sum(axis=1), [None] * len(designs))

    monkeypatch.setattr(designer, "_oracle", oracle)  # the base's oracle() still counts every design
    return designer, calls


COLUMNS = ["seed_index", "seed", "design", "true_score", "call"]


def ordered(table):
    return table[COLUMNS].sort_values(["seed_index", "call"]).reset_index(drop=True)


@pytest.mark.parametrize("method", ["cmaes", "random"])
def test_lockstep_gives_every_repeat_the_one_by_one_table_in_fewer_oracle_calls(method, monkeypatch):
    designer, calls = cheap_car(monkeypatch)
    seeds = designer.sample(2, np.random.default_rng(1))
    scores = designer.oracle(seeds).scores
    calls.clear()
    designer.oracle_calls = 0
    # Repeat after repeat (each run already searches both starts together: one oracle call per round).
    alone, alone_rounds = [], []
    for r in (0, 1):
        alone.append(run_black_box(method, designer, seeds, scores, 30, seed=r).table)
        alone_rounds.append(len(calls))
        calls.clear()
    together, result = run_black_box_repeats(method, designer, seeds, scores, 30, searcher_seeds=[0, 1])
    assert designer.oracle_calls == 2 * 2 * 60 and sum(calls) == 2 * 60
    # Both repeats share each call: as many calls as the longer repeat's rounds, not the sum of both.
    assert len(calls) == len(result.rounds) == max(alone_rounds) < sum(alone_rounds)
    for one, other in zip(alone, together):
        pd.testing.assert_frame_equal(ordered(one), ordered(other))
    assert not together[0]["design"].equals(together[1]["design"])  # the repeats do differ


@pytest.mark.parametrize("designer_name, method", [("tokens", "random"), ("tokens", "tpe"),
                                                   ("tokens", "hill-climber"), ("sphere", "cmaes")])
def test_lockstep_repeats_equal_their_own_runs_for_every_black_box(designer_name, method):
    designer = make_designer(designer_name)
    seeds = designer.sample(3, np.random.default_rng(2))
    scores = designer.oracle(seeds).scores
    alone = [run_black_box(method, designer, seeds, scores, [12, 9, 5], seed=r).table for r in (4, 5)]
    together, _ = run_black_box_repeats(method, designer, seeds, scores, [12, 9, 5], searcher_seeds=[4, 5])
    for one, other in zip(alone, together):
        pd.testing.assert_frame_equal(ordered(one), ordered(other))
        assert other.groupby("seed_index").size().tolist() == [12, 9, 5]


def test_random_perturbations_do_not_depend_on_the_batch_size(monkeypatch):
    designer, calls = cheap_car(monkeypatch)
    seeds = designer.sample(2, np.random.default_rng(2))
    scores = np.array([90.0, 95.0])
    small = run_black_box("random", designer, seeds, scores, 25, seed=4).table
    calls.clear()
    from tasks.search.driver import run_search
    from tasks.search.random_gaussian import RandomGaussian

    large = run_search(RandomGaussian(seed=4, batch_per_seed=512), designer, seeds, scores, 25).table
    assert len(calls) == 1  # one oracle call for both starts
    pd.testing.assert_frame_equal(ordered(small), ordered(large))  # the same designs, cut into fewer calls


def test_repeats_share_the_per_seed_budget_and_rounds_and_each_equals_its_own_run():
    from tasks.search.driver import run_search
    from tasks.search.random_edits import RandomEdits

    designer = make_designer("tokens")
    seeds = designer.sample(3, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    whole = run_search([RandomEdits(seed=0), RandomEdits(seed=1)], designer, seeds, scores, [3, 40, 7])
    first, later = whole.by_repeat()
    assert first.groupby("seed_index").size().tolist() == [3, 40, 7] == later.groupby("seed_index").size().tolist()
    assert set(whole.table["repeat"]) == {0, 1} and "repeat" not in first
    own = run_search(RandomEdits(seed=1), designer, seeds, scores, [3, 40, 7])
    assert len(whole.rounds) == len(own.rounds)  # the repeats shared every round's oracle call
    alone = run_black_box("random", designer, seeds, scores, [3, 40, 7], seed=1).table
    pd.testing.assert_frame_equal(ordered(alone), ordered(later))


def test_a_resumed_lockstep_run_repeats_no_oracle_call(tmp_path):
    from tasks.search.driver import SearchCheckpoint, run_search
    from tasks.search.random_gaussian import RandomGaussian

    designer = make_designer("sphere")
    seeds = designer.sample(2, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores

    def searchers():
        return [RandomGaussian(seed=0, batch_per_seed=4), RandomGaussian(seed=1, batch_per_seed=4)]

    whole = run_search(searchers(), designer, seeds, scores, 12).table
    run_search(searchers(), designer, seeds, scores, 12, checkpoint=SearchCheckpoint(tmp_path, "f"), max_rounds=1)
    before = designer.oracle_calls
    resumed = run_search(searchers(), designer, seeds, scores, 12, checkpoint=SearchCheckpoint(tmp_path, "f"))
    assert designer.oracle_calls - before == 4 * 12 - 4 * 4  # the first round's 16 designs are not scored again
    columns = ["repeat", "seed_index", "design", "true_score", "call"]
    order = ["repeat", "seed_index", "call"]
    pd.testing.assert_frame_equal(whole[columns].sort_values(order).reset_index(drop=True),
                                  resumed.table[columns].sort_values(order).reset_index(drop=True),
                                  check_dtype=False)


def test_repeats_that_send_different_batches_are_refused():
    from tasks.search.driver import run_search
    from tasks.search.random_gaussian import RandomGaussian

    designer = make_designer("sphere")
    seeds = designer.sample(1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="different batches per seed"):
        run_search([RandomGaussian(seed=0, batch_per_seed=4), RandomGaussian(seed=1, batch_per_seed=2)], designer,
                   seeds, designer.oracle(seeds).scores, 8)
