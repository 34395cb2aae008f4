"""The one-shot gradient searcher in the budgeted driver, on toy designers with a small trained surrogate: the
budget, no repeats, the surrogate's order (the k-th verified design is the k-th best candidate, whatever the batch
size), improvement over the seeds, and resumption."""

import numpy as np
import pytest
import torch

from designers import make_designer
from tasks.pure_stages import train_surrogate
from tasks.search.driver import SearchCheckpoint, run_search
from tasks.search.gradient import SearchConfig
from tasks.search.one_shot import OneShotGradient
from tasks.training import Defense, TrainingConfig

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TRAINING = TrainingConfig(epochs=40, batch_size=32, lr=3e-3, defense=Defense("none"))


def trained(designer, n_labelled=300):
    data = designer.sample(n_labelled, np.random.default_rng(0))
    x = designer.encode(data)
    y = torch.tensor(designer.oracle(data).scores, dtype=torch.float32)
    model, _ = train_surrogate(tuple(designer.input_shape), (32, 32), TRAINING, x[30:], y[30:], x[:30], y[:30], None,
                               designer.lower, designer.upper)
    return model


@pytest.fixture(scope="module")
def sphere():
    designer = make_designer("sphere")
    return designer, trained(designer)


@pytest.fixture(scope="module")
def tokens():
    designer = make_designer("tokens", max_distance=3)
    return designer, trained(designer)


def seeds_of(designer, n=4, seed=1):
    seeds = designer.sample(n, np.random.default_rng(seed))
    return seeds, designer.oracle(seeds).scores


def searcher(model, batch_per_seed=3, step_size=0.05, **settings):
    settings = {"restarts": 4, "radius": 0.1, **settings}
    return OneShotGradient(model, SearchConfig(steps=15, step_size=step_size), batch_per_seed=batch_per_seed,
                           **settings)


@pytest.mark.parametrize("which", ["sphere", "tokens"])
def test_verified_in_the_surrogates_order_within_the_budget_and_never_twice(which, request):
    designer, model = request.getfixturevalue(which)
    seeds, scores = seeds_of(designer)
    # Tokens: random one-hot starts a few token edits away (8 per seed meet 6-11 candidates within 3 edits).
    search = searcher(model, **({} if which == "sphere" else
                                {"restarts": 8, "radius": 1.0, "fraction": 0.2, "step_size": 0.2}))
    before = designer.oracle_calls
    table = run_search(search, designer, seeds, scores, 10).table
    assert designer.oracle_calls - before == len(table) <= len(seeds) * 10
    assert table.groupby("seed_index").size().max() <= 10
    assert not table.duplicated(["seed_index", "design"]).any()
    assert not (table["design"] == table["seed"]).any()
    candidates = search.candidates
    assert candidates["constraint_satisfied"].all() and not candidates.duplicated(["seed_index", "design"]).any()
    for i, group in table.sort_values("call").groupby("seed_index"):
        assert group["call"].tolist() == list(range(1, len(group) + 1))
        assert group["predicted"].is_monotonic_decreasing
        # The k-th call verifies the k-th best candidate; a seed stops early only when its candidates run out.
        ranked = candidates[candidates["seed_index"] == i].sort_values("rank")
        assert group["design"].tolist() == ranked["design"].tolist()[:10]
    spent = table.groupby("seed_index").size().reindex(range(len(seeds)), fill_value=0).to_numpy()
    assert (spent == np.minimum(10, search.candidates_per_seed(len(seeds)))).all() and spent.min() > 0
    if which == "tokens":
        distance = designer.constraints(list(table["design"]), list(table["seed"])).values["distance"]
        assert (distance <= 3).all()


def test_the_batch_size_only_cuts_the_verification_into_calls(sphere):
    designer, model = sphere
    seeds, scores = seeds_of(designer)
    one_call = run_search(searcher(model, batch_per_seed=12), designer, seeds, scores, 12)
    one_by_one = run_search(searcher(model, batch_per_seed=1), designer, seeds, scores, 12)
    assert one_call.table["round"].max() == 1 and one_by_one.table["round"].max() == 12
    columns = ["seed_index", "call", "design", "true_score"]
    assert one_call.table[columns].sort_values(["seed_index", "call"]).reset_index(drop=True).equals(
        one_by_one.table[columns].sort_values(["seed_index", "call"]).reset_index(drop=True))


def test_gradient_search_improves_on_every_seed_of_the_sphere(sphere):
    designer, model = sphere
    # Seeds near the box's corners, far from the optimum at the centre: the bowl is locally nearly linear there.
    seeds = [(0.05, 0.95, 0.05, 0.95), (0.95, 0.05, 0.95, 0.05), (0.0, 0.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0)]
    scores = designer.oracle(seeds).scores
    table = run_search(searcher(model, restarts=1, radius=0.0), designer, seeds, scores, 10).table
    best = table.groupby("seed_index")["true_score"].max().reindex(range(len(seeds))).to_numpy()
    assert (best > scores).all()
    assert (best - scores).mean() > 0.3  # seeds start at −1.3 … −1.8; the optimum is 0


def test_a_resumed_search_repeats_no_oracle_call_and_keeps_the_order(sphere, tmp_path):
    designer, model = sphere
    seeds, scores = seeds_of(designer)
    whole = run_search(searcher(model), designer, seeds, scores, 9).table
    checkpoint = SearchCheckpoint(tmp_path / "one-shot", "fingerprint")
    first = run_search(searcher(model), designer, seeds, scores, 9, max_rounds=2, checkpoint=checkpoint)
    assert first.table["round"].max() == 2
    fresh = searcher(model, seed=99)  # a different restart noise: the saved ranking must be the one used
    calls_before = designer.oracle_calls
    resumed = run_search(fresh, designer, seeds, scores, 9, checkpoint=checkpoint)
    assert fresh.candidates is None  # the ranking came from the checkpoint, not from a new search
    assert designer.oracle_calls - calls_before == (resumed.table["round"] > 2).sum()
    columns = ["seed_index", "call", "design"]
    assert resumed.table[columns].sort_values(["seed_index", "call"]).reset_index(drop=True).equals(
        whole[columns].sort_values(["seed_index", "call"]).reset_index(drop=True))
