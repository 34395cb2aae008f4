"""Graph GA as a black box (Jensen 2019, *A graph-based genetic algorithm and generative model/Monte Carlo tree
search for the exploration of chemical space*, Chemical Science), with PMO's tuned settings (Gao et al. 2022: a
population of 120, mutation rate 0.067): the second of the two published methods the PMO table compares against,
run here on the same oracle, starts and budget as every other method.

Each round, per seed, ``proposals_per_seed`` children (:func:`designers.graph_ga.offspring`) of two parents drawn
from the population with probability proportional to their score (Jensen's mating pool; scores below zero, as
penalized logP's, are shifted up to zero first). The population is the ``population`` best verified designs of
every seed where the designer binds no design to its seed (de novo: one GA over all starts), else of the seed's own
lineage (a child of two designs near the seed tends to stay near it). A steady-state GA: the driver sends
``batch_per_seed`` children per seed a round and the population is the best so far, not PMO's generations of 70
children. De novo no child is verified twice, for two starts (PMO's oracle caches repeats). Molecules only (graph
operators); no surrogate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from designers.graph_ga import MUTATION_RATE
from tasks.search.base import Proposal, SearchState, Searcher
from tasks.search.token_searcher import active_seeds


class GraphGA(Searcher):
    name = "graph-ga"
    designers = ("tokens",)

    def __init__(self, population: int = 120, batch_per_seed: int = 5, proposals_per_seed: int = 10,
                 mutation_rate: float = MUTATION_RATE, seed: int = 0) -> None:
        self.population, self.batch_per_seed = population, batch_per_seed
        self.proposals_per_seed, self.mutation_rate, self.seed = proposals_per_seed, mutation_rate, seed

    @staticmethod
    def supports(designer: Any) -> bool:
        return hasattr(designer, "graph_offspring")

    def ask(self, state: SearchState) -> list[Proposal]:
        active = active_seeds(state)
        if not len(active):
            return []
        rng = np.random.default_rng([self.seed, state.round, 0x96A])
        shared = None if state.designer.bound_to_seed else _pool(state, range(len(state.seeds)), self.population)
        first, second = [], []
        for i in active:
            designs, weights = shared or _pool(state, [int(i)], self.population)
            pick = rng.choice(len(designs), size=(2, self.proposals_per_seed), p=weights)
            first += [designs[j] for j in pick[0]]
            second += [designs[j] for j in pick[1]]
        children = state.designer.graph_offspring(first, second, seed=int(rng.integers(2**31)),
                                                  mutation_rate=self.mutation_rate)
        n = self.proposals_per_seed
        proposals = [Proposal(int(i), [c for c in children[k * n:(k + 1) * n] if c]) for k, i in enumerate(active)]
        return proposals if shared is None else _new_to_every_start(state, proposals, self.batch_per_seed)


def _new_to_every_start(state: SearchState, proposals: list[Proposal], batch: int) -> list[Proposal]:
    """De novo, one GA over all starts: no child another start has verified, or sends this round (its first
    ``batch``), costs a second call — PMO's oracle answers a repeat from its cache, for free."""
    key = state.designer.key
    known = state.known_keys()
    out = []
    for p in proposals:
        designs = list({key(d): d for d in p.designs if key(d) not in known}.values())
        known.update(key(d) for d in designs[:batch])
        out.append(Proposal(p.seed_index, designs))
    return out


def _pool(state: SearchState, seed_indices: Any, size: int) -> tuple[list[Any], np.ndarray]:
    """The ``size`` best distinct verified designs of ``seed_indices`` (their seeds included) and Jensen's
    mating probabilities: proportional to the score (shifted up to zero where some are negative), plus a floor."""
    best: dict[str, tuple[Any, float]] = {}
    for i in seed_indices:
        for design, score in state.best(i, size):
            best.setdefault(state.designer.key(design), (design, score))
    ranked = sorted(best.values(), key=lambda pair: -pair[1])[:size]
    scores = np.array([s for _, s in ranked])
    weights = scores - min(float(scores.min()), 0.0) + 1e-6
    return [d for d, _ in ranked], weights / weights.sum()
