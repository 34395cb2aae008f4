"""The budgeted driver, HotFlip edit scores and the black boxes on toy designers with known optima."""

import numpy as np
import pytest
import torch

from designers import make_designer
from tasks.search.anytime import protocol_metrics
from tasks.search.base import Proposal, SearchState, Searcher
from tasks.search.driver import BudgetedOracle, BudgetExceeded, run_search
from tasks.search.edits import apply_edit, edit_of, first_order_scores
from tasks.search.registry import make_black_box


def test_first_order_scores_equal_the_exact_change_on_a_linear_surrogate():
    torch.manual_seed(0)
    length, vocabulary = 6, 5
    rows = torch.tensor([[1, 2, 3, 4, 0, 0], [3, 3, 1, 0, 0, 0]])
    weights = torch.randn(length, vocabulary)
    value = lambda r: (torch.nn.functional.one_hot(r, vocabulary).float() * weights).sum((1, 2))  # noqa: E731
    scores = first_order_scores(weights.expand(2, length, vocabulary), rows)
    checked = 0
    for n in range(2):
        for flat in torch.nonzero(torch.isfinite(scores[n])).squeeze(1):
            kind, position, token = edit_of(flat[None], length, vocabulary)
            exact = value(apply_edit(rows[n:n + 1], kind, position, token)) - value(rows[n:n + 1])
            assert float(exact) == pytest.approx(float(scores[n, flat]), abs=1e-5)
            checked += 1
    assert checked > 50


def test_the_budgeted_oracle_refuses_a_call_beyond_a_seeds_budget():
    designer = make_designer("tokens")
    oracle = BudgetedOracle(designer.oracle, np.array([1, 1]))
    oracle(["ab"], [0])
    with pytest.raises(BudgetExceeded):
        oracle(["ab", "ba"], [0, 1])
    assert designer.oracle_calls == 1


@pytest.mark.parametrize("designer_name, method", [("tokens", "hill-climber"), ("tokens", "genetic"),
                                                   ("tokens", "random"), ("sphere", "cmaes"), ("sphere", "random")])
def test_the_driver_never_exceeds_the_budget_nor_repeats_a_design(designer_name, method):
    designer = make_designer(designer_name, **({"max_distance": 4} if designer_name == "tokens" else {}))
    seeds = designer.sample(4, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    before = designer.oracle_calls
    result = run_search(make_black_box(method, designer), designer, seeds, scores, 20)
    table = result.table
    assert designer.oracle_calls - before == len(table) <= 4 * 20
    assert table.groupby("seed_index").size().max() <= 20
    assert not table.duplicated(["seed_index", "design"]).any()
    assert not (table["design"] == table["seed"]).any()
    if designer_name == "tokens":
        distance = designer.constraints(list(table["design"]), list(table["seed"])).values["distance"]
        assert (distance <= 4).all()


def test_the_hill_climber_reaches_the_token_optimum_within_300_calls():
    designer = make_designer("tokens")
    seeds = designer.sample(4, np.random.default_rng(1))
    scores = designer.oracle(seeds).scores
    result = run_search(make_black_box("hill-climber", designer), designer, seeds, scores, 300)
    metrics = protocol_metrics(result.table, scores, 300)
    assert metrics["best_score_at_300"] == designer.optimum
    assert metrics["success_rate"] == 1.0


class _LateSearcher(Searcher):
    """Nothing for the first ``empty_rounds`` rounds (empty proposals), then one new design per round."""

    name = "late"

    def __init__(self, empty_rounds: int, designer) -> None:
        self.empty_rounds, self.designer = empty_rounds, designer

    def ask(self, state: SearchState) -> list[Proposal]:
        if state.round <= self.empty_rounds:
            return [Proposal(0, [])]
        return [Proposal(0, self.designer.sample(1, np.random.default_rng(state.round)))]


def test_an_empty_proposal_asks_again_until_patience_and_no_proposal_finishes_the_seed():
    designer = make_designer("tokens")
    seeds = designer.sample(1, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    patient = run_search(_LateSearcher(3, designer), designer, seeds, scores, 2, patience=5)
    assert len(patient.table) == 2 and len(patient.rounds) == 5
    impatient = run_search(_LateSearcher(3, designer), designer, seeds, scores, 2, patience=3)
    assert len(impatient.table) == 0 and len(impatient.rounds) == 3

    class Silent(_LateSearcher):
        def ask(self, state):
            return []

    assert len(run_search(Silent(0, designer), designer, seeds, scores, 2).rounds) == 1
