"""The design loop on toy designers with known optima: budget, constraints, no repeats, resumption, reaching the
optimum; and against the hill-climber at the same budget."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from designers import make_designer
from tasks.ensemble import train_ensemble
from tasks.search.anytime import protocol_metrics
from tasks.search.design_loop import DesignLoop, LoopConfig, seed_ranking
from tasks.search.driver import SearchCheckpoint, run_search
from tasks.search.registry import make_black_box
from tasks.training import Defense, TrainingConfig

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CONFIG = TrainingConfig(epochs=30, batch_size=32, lr=3e-3, defense=Defense("none"))


def make_loop(designer, n_labelled=200, hidden=(64,), members=3, config=CONFIG, sign=1.0, **loop):
    torch.manual_seed(0)
    data = designer.sample(n_labelled, np.random.default_rng(0))
    x = designer.encode(data)
    y = sign * torch.tensor(designer.oracle(data).scores, dtype=torch.float32)
    ensemble, _ = train_ensemble(designer.input_shape, hidden, config, members, x[20:], y[20:], x[:20], y[:20])
    settings = {"batch_per_seed": 2, "proposals_per_incumbent": 64, "finetune_epochs": 2, **loop}
    return DesignLoop(ensemble, config, x, y, LoopConfig(**settings), lower=designer.lower, upper=designer.upper)


def seeds_of(designer, n=5, seed=1):
    seeds = designer.sample(n, np.random.default_rng(seed))
    return seeds, designer.oracle(seeds).scores


@pytest.mark.parametrize("designer_name", ["tokens", "sphere"])
def test_the_loop_never_exceeds_the_budget_nor_sends_a_repeat_or_an_infeasible_design(designer_name):
    designer = make_designer(designer_name, **({"max_distance": 3} if designer_name == "tokens" else {}))
    loop = make_loop(designer)
    seeds, scores = seeds_of(designer)
    before = designer.oracle_calls
    result = run_search(loop, designer, seeds, scores, 12)
    table = result.table
    assert designer.oracle_calls - before == len(table) == result.counters["scored"]
    assert table.groupby("seed_index").size().max() <= 12
    assert not table.duplicated(["seed_index", "design"]).any()
    assert not (table["design"] == table["seed"]).any()
    report = designer.constraints([designer.parse(d) for d in table["design"]],
                                  [designer.parse(s) for s in table["seed"]])
    assert report.satisfied.all()
    if designer_name == "tokens":
        # The loop screens its own proposals, so the driver finds none of them infeasible.
        assert result.counters["infeasible"] == 0


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_loop_reaches_the_token_optimum_within_20_calls_a_seed_and_beats_the_hill_climber_there(precision):
    designer = make_designer("tokens")
    seeds, scores = seeds_of(designer)
    loop = run_search(make_loop(designer, scoring_precision=precision), designer, seeds, scores, 20)
    climber = run_search(make_black_box("hill-climber", designer, batch_per_seed=2), designer, seeds, scores, 20)
    ours = protocol_metrics(loop.table, scores, 20)
    theirs = protocol_metrics(climber.table, scores, 20)
    # De novo the optimum is verified once, for the seed that got there first; no other seed pays for it again.
    assert loop.table["true_score"].max() == designer.optimum
    assert (loop.table["true_score"] == designer.optimum).sum() == 1
    assert ours["success_rate"] == 1.0
    assert ours["improvement_mean"] > theirs["improvement_mean"]


def test_the_loop_approaches_the_sphere_optimum_within_30_calls_a_seed():
    designer = make_designer("sphere")
    config = TrainingConfig(epochs=60, batch_size=32, lr=3e-3, defense=Defense("none"))
    loop = make_loop(designer, hidden=(64, 64), config=config)
    seeds, scores = seeds_of(designer, n=4)
    result = run_search(loop, designer, seeds, scores, 30)
    best = result.table.groupby("seed_index")["true_score"].max().to_numpy()
    assert (best > scores).all()
    assert best.mean() > -0.1  # the optimum is 0; random seeds start near -1


def test_a_resumed_loop_repeats_no_oracle_call(tmp_path):
    designer = make_designer("tokens", max_distance=4)
    seeds, scores = seeds_of(designer)
    checkpoint = SearchCheckpoint(tmp_path / "loop", "fingerprint")
    first = run_search(make_loop(designer), designer, seeds, scores, 12, max_rounds=2, checkpoint=checkpoint)
    assert len(first.table) == 2 * 2 * len(seeds)
    # A new process would rebuild the loop from scratch: a fresh searcher, the same checkpoint folder.
    fresh = make_loop(designer)
    calls_before = designer.oracle_calls
    resumed = run_search(fresh, designer, seeds, scores, 12, checkpoint=checkpoint)
    new = resumed.table[resumed.table["round"] > 2]
    assert designer.oracle_calls - calls_before == len(new)
    assert resumed.table.iloc[: len(first.table)]["design"].tolist() == first.table["design"].tolist()
    assert not resumed.table.duplicated(["seed_index", "design"]).any()
    assert resumed.table.groupby("seed_index").size().max() <= 12
    # Another setting's checkpoint is not taken for this one's.
    other = run_search(make_loop(designer), designer, seeds, scores, 4,
                       checkpoint=SearchCheckpoint(tmp_path / "loop", "another"))
    assert other.table["round"].min() == 1


def test_a_loops_checkpoint_belongs_to_its_constraints():
    from designers.molecule import MoleculeDesigner
    from designers.base import designer_fingerprint

    loose, strict = MoleculeDesigner(similarity_threshold=0.4), MoleculeDesigner(similarity_threshold=0.6)
    assert designer_fingerprint(loose) == designer_fingerprint(strict)  # the same oracle: labels are shared
    assert designer_fingerprint(loose, oracle_only=False) != designer_fingerprint(strict, oracle_only=False)
    assert designer_fingerprint(loose, oracle_only=False) == designer_fingerprint(
        MoleculeDesigner(similarity_threshold=0.4, workers=1), oracle_only=False)


def test_a_fixed_unranked_share_gives_each_seed_that_many_random_edits_a_round():
    designer = make_designer("tokens")
    loop = make_loop(designer, batch_per_seed=5, unranked_share=0.4)
    seeds, scores = seeds_of(designer)
    from tasks.search.base import SearchState

    proposals = loop.ask(SearchState(designer, seeds, scores, 20))
    assert len(proposals) == len(seeds)
    for p in proposals:
        chance = loop._unranked_keys[p.seed_index]
        assert len(chance) == 2
        assert sum(designer.key(d) in chance for d in p.designs[:5]) == 2


def test_the_adaptive_split_follows_the_arm_that_wins():
    designer = make_designer("tokens")
    loop = make_loop(designer, batch_per_seed=5)
    loop.arms = torch.tensor([[40.0, 100.0], [5.0, 100.0]], dtype=torch.float64)   # ranked wins 8 times as often
    favour_ranked = loop._unranked_slots(200, 0).float().mean() / 5
    loop.arms = torch.tensor([[5.0, 100.0], [40.0, 100.0]], dtype=torch.float64)
    favour_random = loop._unranked_slots(200, 0).float().mean() / 5
    floor = loop.hedge_floor
    assert favour_ranked == pytest.approx(floor, abs=0.04) and favour_random == pytest.approx(1 - floor, abs=0.04)


def test_with_a_surrogate_that_ranks_backwards_the_loop_moves_its_calls_to_random_edits_and_still_climbs():
    designer = make_designer("tokens")
    seeds, scores = seeds_of(designer, n=8)
    loop = make_loop(designer, sign=-1.0, batch_per_seed=4, finetune_epochs=0)   # trained on the negated score
    result = run_search(loop, designer, seeds, scores, 40)
    ranked_calls, random_calls = loop.arms[:, 1].tolist()
    assert random_calls > 2 * ranked_calls
    last = result.rounds[-1]   # the split's numbers reach the round summary, and so the MLflow run
    assert last["unranked_share"] > 0.5 and last["ranked_win_rate"] < last["unranked_win_rate"]
    backwards = run_search(make_loop(designer, sign=-1.0, batch_per_seed=4, finetune_epochs=0, unranked_share=0.0),
                           designer, seeds, scores, 40)
    ours = protocol_metrics(result.table, scores, 40)["improvement_mean"]
    theirs = protocol_metrics(backwards.table, scores, 40)["improvement_mean"]
    assert ours > theirs + 1, (ours, theirs)


def test_on_a_box_designer_a_surrogate_that_ranks_backwards_sends_the_calls_to_random_trust_region_points():
    """The car's case in miniature: where the ensemble's optimum is not the oracle's, random points of the best
    incumbent's trust region, unranked, keep the loop climbing; ranked, the same points never reach the oracle."""
    designer = make_designer("sphere")
    seeds, scores = seeds_of(designer, n=8)
    loop = make_loop(designer, sign=-1.0, batch_per_seed=4, finetune_epochs=0)
    result = run_search(loop, designer, seeds, scores, 24)
    ranked_calls, random_calls = loop.arms[:, 1].tolist()
    assert random_calls > 2 * ranked_calls
    ranked_only = run_search(make_loop(designer, sign=-1.0, batch_per_seed=4, finetune_epochs=0, unranked_share=0.0),
                             designer, seeds, scores, 24)
    ours = protocol_metrics(result.table, scores, 24)
    theirs = protocol_metrics(ranked_only.table, scores, 24)
    assert ours["success_rate"] == 1.0
    assert ours["improvement_mean"] > theirs["improvement_mean"] + 0.2, (ours, theirs)


def test_without_a_seed_bound_the_loop_also_ranks_crossovers_of_all_lineages_and_under_one_none():
    free, bound = make_designer("tokens"), make_designer("tokens", max_distance=3)
    seeds, _ = seeds_of(free)
    owner = torch.arange(len(seeds))

    def candidates(designer, share):
        loop = make_loop(designer, crossover_share=share, random_share=0.0)
        return {tuple(row) for row in loop._token_candidates(designer, seeds, owner)[0].tolist()}

    edits = candidates(bound, 0.5)
    assert candidates(free, 0.0) == edits   # the same edits, drawn first from the same generator
    with_crossovers = candidates(free, 0.5)
    assert edits < with_crossovers and len(with_crossovers - edits) > 3 * len(seeds)


def test_de_novo_molecules_also_get_graph_ga_children_and_under_a_seed_bound_none():
    free = make_designer("molecule", objective="qed", similarity_threshold=0.0, workers=1)
    bound = make_designer("molecule", objective="qed", similarity_threshold=0.4, workers=1)
    seeds, _ = seeds_of(free, n=3)
    owner = torch.arange(len(seeds))
    quick = TrainingConfig(epochs=2, batch_size=32, lr=3e-3, defense=Defense("none"))

    def candidates(designer, share):
        loop = make_loop(designer, n_labelled=80, members=2, config=quick, graph_share=share, crossover_share=0.0,
                         random_share=0.0, proposals_per_incumbent=32)
        rows = loop._token_candidates(designer, seeds, owner)[0]
        return set(designer.decode(designer.one_hot(rows)))

    edits = candidates(bound, 1.0)
    assert candidates(free, 0.0) == edits
    with_graph = candidates(free, 1.0)
    children = with_graph - edits
    assert edits < with_graph and len(children) > len(seeds) * 16   # 32 a seed, less the unspellable ones


def test_de_novo_molecules_get_substituent_decorations_when_asked_and_under_a_seed_bound_none():
    from designers.decorations import all_decorations

    free = make_designer("molecule", objective="qed", similarity_threshold=0.0, workers=1)
    bound = make_designer("molecule", objective="qed", similarity_threshold=0.4, workers=1)
    seeds, _ = seeds_of(free, n=3)
    quick = TrainingConfig(epochs=2, batch_size=32, lr=3e-3, defense=Defense("none"))

    def candidates(designer, share):
        loop = make_loop(designer, n_labelled=80, members=2, config=quick, decoration_share=share, graph_share=0.0,
                         crossover_share=0.0, random_share=0.0, proposals_per_incumbent=32)
        rows = loop._token_candidates(designer, seeds, torch.arange(len(seeds)))[0]
        return set(designer.decode(designer.one_hot(rows)))

    edits = candidates(bound, 1.0)
    assert candidates(free, 0.0) == edits
    decorated = {free.key(d) for d in candidates(free, 1.0) - edits}
    possible = {free.key(c) for seed in seeds for c in all_decorations(seed)}
    assert len(decorated) > 3 * 16 and decorated <= possible   # up to 32 a seed, less the unspellable ones


def test_de_novo_no_design_is_verified_for_two_seeds():
    designer = make_designer("tokens")   # no seed bound: every lineage climbs towards the same target
    seeds, scores = seeds_of(designer, n=6)
    result = run_search(make_loop(designer, batch_per_seed=4), designer, seeds, scores, 24)
    table = result.table
    assert len(table) > 6 * 12 and table.groupby("seed_index").size().max() <= 24
    assert not table["design"].duplicated().any()
    assert not table["design"].isin(table["seed"]).any()


def test_the_trust_region_follows_turbos_counters_and_restarts_from_its_first_size():
    """Doubles after ``success_tolerance`` improving rounds in a row, halves after ``failure_tolerance`` dry
    ones, and a region halved below its smallest size starts again from the first (Eriksson et al. 2019)."""
    from tasks.search.base import SCORED, SearchState, Told

    designer = make_designer("sphere")
    loop = make_loop(designer, finetune_epochs=0, radius=(0.4, 0.1, 1.0), success_tolerance=2, failure_tolerance=3)
    state = SearchState(designer, [(0.5,) * 4], np.array([-1.0]), 100)
    loop.ask(state)
    score = iter(range(100))

    def round_(improves: bool) -> float:
        value = -0.9 + 0.01 * next(score) if improves else -5.0
        key = f"design {next(score)}"
        state.scores[0][key] = value
        loop.tell(state, [Told(0, [None], [key], [SCORED], np.array([value]), [None])])
        return round(float(loop.radius[0]), 6)

    assert [round_(True), round_(True)] == [0.4, 0.8]
    assert [round_(True), round_(True), round_(True)] == [0.8, 1.0, 1.0]   # capped at the largest
    assert [round_(False), round_(False), round_(True), round_(False)] == [1.0, 1.0, 1.0, 1.0]  # the streak broke
    assert [round_(False), round_(False)] == [1.0, 0.5]                    # the third dry round in a row
    assert [round_(False) for _ in range(6)][2::3] == [0.25, 0.125]
    assert [round_(False) for _ in range(3)][-1] == 0.4                     # 0.0625 < 0.1: the first size again


def test_seed_ranking_groups_by_seed_best_first_and_leaves_out_what_cannot_be_ranked():
    values = torch.tensor([0.5, 2.0, -torch.inf, 1.0, 3.0, float("nan"), 0.1])
    seed_of = torch.tensor([1, 0, 0, 1, 1, 0, 0])
    order, rank = seed_ranking(values, seed_of)
    assert order.tolist() == [1, 6, 4, 3, 0]
    assert rank.tolist() == [0, 1, 0, 1, 2]


def test_the_ridge_rescorer_ranks_a_pool_per_seed_and_learns_every_verified_design():
    designer = make_designer("molecule", objective="qed", similarity_threshold=0.0, workers=1)
    seeds, scores = seeds_of(designer, n=3)
    quick = TrainingConfig(epochs=2, batch_size=32, lr=3e-3, defense=Defense("none"))
    loop = make_loop(designer, n_labelled=80, members=2, config=quick, rescorer="ridge", rescore_pool=16,
                     proposals_per_incumbent=32, unranked_share=0.0)
    result = run_search(loop, designer, seeds, scores, 6)
    table = result.table
    assert len(table) == 18 and table["design"].is_unique
    # The ridge has seen the labelled data, the seeds and every design verified before the last round (whose six
    # it would learn at the next ask), and no design twice.
    assert loop.ridge.n == 80 + 3 + len(table) - 6 and len(loop._ridge_keys) == loop.ridge.n
    from tasks.search.base import SearchState

    state = SearchState(designer, seeds, np.asarray(scores), 6)
    rows, seed_of, acquisition, mean, _ = loop._token_candidates(designer, seeds, torch.arange(3))
    rescored, _ = loop._rescored(state, rows, seed_of, acquisition, mean)
    pooled = torch.isfinite(rescored)
    assert (torch.bincount(seed_of[pooled], minlength=3) <= 16).all() and pooled.sum() > 3 * 8
    decoded = designer.decode(designer.one_hot(rows[pooled]))
    expected = loop.ridge.predict(designer.fingerprints(decoded))
    torch.testing.assert_close(rescored[pooled], expected)
    # An optimistic acquisition adds β times the ridge's posterior std; the mean stays the ridge's prediction.
    loop.config = replace(loop.config, beta=1.5)
    rescored, rescored_mean = loop._rescored(state, rows, seed_of, acquisition, mean)
    pooled = torch.isfinite(rescored)
    features = designer.fingerprints(designer.decode(designer.one_hot(rows[pooled])))
    torch.testing.assert_close(rescored_mean[pooled], loop.ridge.predict(features))
    torch.testing.assert_close(rescored[pooled], loop.ridge.predict(features) + 1.5 * loop.ridge.std(features))


def test_the_ridge_rescorer_refuses_a_designer_without_fingerprints():
    designer = make_designer("tokens")
    seeds, scores = seeds_of(designer, n=2)
    with pytest.raises(ValueError, match="rescorer 'ridge' needs a designer with fingerprints"):
        run_search(make_loop(designer, rescorer="ridge"), designer, seeds, scores, 4)
    with pytest.raises(ValueError, match="rescorer 'forest'"):
        make_loop(designer, rescorer="forest")
