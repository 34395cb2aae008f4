"""The SELFIES GA black box (tasks/search/genetic.py): the hill-climber's mutants alternating with crossover
children, of the seed's own lineage under a seed bound and of every seed's without one."""

import numpy as np

from designers import make_designer
from tasks.search.base import SearchState
from tasks.search.registry import make_black_box


def proposals(method, designer, seeds, scores):
    state = SearchState(designer, seeds, scores, 20)
    return {p.seed_index: p.designs for p in make_black_box(method, designer, seed=3).ask(state)}


def test_under_a_seed_bound_the_gas_children_mix_only_the_seeds_own_lineage():
    designer = make_designer("tokens", max_distance=4)
    seeds = designer.sample(4, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    mutants = proposals("hill-climber", designer, seeds, scores)
    for i, designs in proposals("genetic", designer, seeds, scores).items():
        assert designs[1::2][:20] == mutants[i][:20]
        seed = seeds[i]   # before any call the lineage is the seed alone: each child is a prefix and a suffix of it
        for child in designs[0:40:2]:
            assert any(child == (seed[:a] + seed[b:])[: designer.max_length] for a in range(1, len(seed) + 1)
                       for b in range(len(seed)))


def test_de_novo_the_ga_alternates_crossover_children_of_all_lineages_with_the_mutants():
    designer = make_designer("tokens")
    seeds = designer.sample(4, np.random.default_rng(0))
    scores = designer.oracle(seeds).scores
    mutants = proposals("hill-climber", designer, seeds, scores)
    mixed = proposals("genetic", designer, seeds, scores)
    for i, designs in mixed.items():
        assert len(designs) == 60 and designs[1::2][:20] == mutants[i][:20]   # 20 children, 40 mutants
        children = designs[0:40:2]
        assert sum(child not in mutants[i] for child in children) > 10
        # A child's tail comes from any seed's lineage: some end like another seed, not like their own.
        others = [s for j, s in enumerate(seeds) if j != i]
        assert any(child[-3:] in {s[-3:] for s in others} and child[-3:] != seeds[i][-3:] for child in children)
