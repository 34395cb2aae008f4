"""A SELFIES genetic algorithm: the hill-climber's mutations plus one-point crossover (Nigam et al. 2020,
*Augmenting Genetic Algorithms with Deep Neural Networks for Exploring the Chemical Space*, ICLR, without their
discriminator). Beside the hill-climber's mutants of the seed's ``population`` best verified designs, each seed gets
half as many (``crossover_share``) children of one of them and a partner: one of the best verified designs of any
seed where the designer binds no design to its seed (de novo), else another of the seed's own (a child of two
designs near the seed tends to stay near it). No surrogate: the black box a model-based search must beat."""

from __future__ import annotations

import numpy as np

from tasks.search.base import Proposal, SearchState
from tasks.search.edits import random_crossovers
from tasks.search.hill_climber import HillClimber
from tasks.search.token_searcher import active_seeds


class SelfiesGA(HillClimber):
    name = "genetic"

    def __init__(self, population: int = 4, max_edits: int = 2, batch_per_seed: int = 5,
                 proposals_per_seed: int = 40, crossover_share: float = 0.5, seed: int = 0) -> None:
        super().__init__(population, max_edits, batch_per_seed, proposals_per_seed, seed)
        self.crossover_share = crossover_share

    def ask(self, state: SearchState) -> list[Proposal]:
        mutants = super().ask(state)
        n_children = round(self.crossover_share * self.proposals_per_seed)
        if not mutants or not n_children:
            return mutants
        active = active_seeds(state)
        rng = np.random.default_rng([self.generator.initial_seed(), state.round, 0xC055])
        parents = [[design for design, _ in state.best(int(i), self.population)] for i in active]
        first = [own[j] for own in parents for j in np.sort(rng.integers(len(own), size=n_children))]
        if state.designer.bound_to_seed:
            second = [own[j] for own in parents for j in rng.integers(len(own), size=n_children)]
        else:
            everyone = [d for i in range(len(state.seeds)) for d in state.best(i, self.population)]
            pool = [design for design, _ in sorted(everyone, key=lambda pair: -pair[1])[: sum(map(len, parents))]]
            second = [pool[j] for j in rng.integers(len(pool), size=len(first))]
        children = state.designer.decode(state.designer.one_hot(random_crossovers(
            self.rows(state.designer, first), self.rows(state.designer, second), self.generator)))
        by_seed = {p.seed_index: p.designs for p in mutants}
        out = []
        for k, i in enumerate(active):
            kids, others = children[k * n_children:(k + 1) * n_children], by_seed.get(int(i), [])
            # Children and mutants alternate, so each round's q calls try both.
            mixed = [d for pair in zip(kids, others) for d in pair] + kids[len(others):] + others[len(kids):]
            out.append(Proposal(int(i), mixed))
        return out
