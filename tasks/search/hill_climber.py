"""A population mutation hill-climber on token rows, STONED-style (Nigam et al. 2021, *Beyond generative
models: superfast traversal, optimization, novelty, exploration and discovery (STONED) algorithm for molecules
using SELFIES*, Chemical Science): every proposal is one of the seed's ``population`` best verified designs (the
seed included) with 1 … ``max_edits`` random token edits. No surrogate at all: the black box to beat."""

from __future__ import annotations

import numpy as np

from tasks.search.base import Proposal, SearchState
from tasks.search.token_searcher import TokenSearcher, active_seeds


class HillClimber(TokenSearcher):
    name = "hill-climber"

    def __init__(self, population: int = 4, max_edits: int = 2, batch_per_seed: int = 5,
                 proposals_per_seed: int = 40, seed: int = 0) -> None:
        super().__init__(seed)
        self.population, self.max_edits = population, max_edits
        self.batch_per_seed, self.proposals_per_seed = batch_per_seed, proposals_per_seed

    def ask(self, state: SearchState) -> list[Proposal]:
        owner, parents = [], []
        for i in active_seeds(state):
            pool = [design for design, _ in state.best(int(i), self.population)]
            pick = np.asarray(np.random.default_rng([self.generator.initial_seed(), state.round, int(i)])
                              .integers(len(pool), size=self.proposals_per_seed))
            # Better parents first: a proposal's rank follows its parent's, so the q sent favour the best.
            for j in np.sort(pick):
                owner.append(int(i))
                parents.append(pool[j])
        if not owner:
            return []
        children = self.mutate(state.designer, self.rows(state.designer, parents), self.max_edits)
        return self.proposals(owner, children)
