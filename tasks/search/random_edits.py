"""Random search over token edits: each proposal is the seed with 1 … ``max_edits`` uniformly random
substitutions, insertions or deletions (random search, Bergstra & Bengio 2012, *Random Search for
Hyper-Parameter Optimization*, JMLR, on the seed's edit neighbourhood). It never learns: the control."""

from __future__ import annotations

import numpy as np

from tasks.search.base import Proposal, SearchState
from tasks.search.token_searcher import TokenSearcher, active_seeds


class RandomEdits(TokenSearcher):
    name = "random"

    def __init__(self, max_edits: int = 3, batch_per_seed: int = 16, seed: int = 0) -> None:
        super().__init__(seed)
        self.max_edits, self.batch_per_seed = max_edits, batch_per_seed

    def ask(self, state: SearchState) -> list[Proposal]:
        seeds = active_seeds(state)
        if not len(seeds):
            return []
        owner = np.repeat(seeds, self.batch_per_seed)
        parents = self.rows(state.designer, [state.seeds[i] for i in owner])
        return self.proposals(owner, self.mutate(state.designer, parents, self.max_edits))
