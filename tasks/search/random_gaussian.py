"""Random search for box designers: Gaussian perturbations ``x_seed + σ·z`` of the seed's encoding, repaired by
``designer.project`` — CMA-ES (:mod:`tasks.search.cmaes`) with its learning switched off, the control."""

from __future__ import annotations

import numpy as np
import torch

from tasks.search.base import Proposal, SearchState, Searcher


class RandomGaussian(Searcher):
    name = "random"
    designers = ("box",)

    def __init__(self, sigma: float = 0.1, batch_per_seed: int = 16, seed: int = 0) -> None:
        self.sigma, self.batch_per_seed = sigma, batch_per_seed
        self.generator = torch.Generator().manual_seed(seed * 7_919 + 1)

    def ask(self, state: SearchState) -> list[Proposal]:
        seeds = np.flatnonzero(state.remaining > 0)
        if not len(seeds):
            return []
        x0 = state.designer.encode([state.seeds[i] for i in seeds]).float().repeat_interleave(self.batch_per_seed, 0)
        x = x0 + self.sigma * torch.randn(x0.shape, generator=self.generator)
        designs = state.designer.decode(state.designer.discretize(state.designer.project(x)))
        b = self.batch_per_seed
        return [Proposal(int(i), designs[k * b:(k + 1) * b]) for k, i in enumerate(seeds)]

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
