"""Random search for box designers: Gaussian perturbations ``x_seed + σ·z`` of the seed's encoding, repaired by
``designer.project`` (and ``discretize``, so the key is the design the oracle scores) — CMA-ES
(:mod:`tasks.search.cmaes`) with its learning switched off, the control (random search, Bergstra & Bengio 2012,
*Random Search for Hyper-Parameter Optimization*, JMLR).

Each seed draws from its own stream (``numpy.random.default_rng([seed, seed_index, 1])``; not CMA-ES's
``[seed, seed_index]``, whose first generation would draw the very same perturbations), so the designs a seed
meets do not depend on which other seeds are searched beside it nor on ``batch_per_seed``: the driver sends the
first fresh feasible ones in stream order, and the batch size only decides how many oracle calls they are cut into.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tasks.search.base import Proposal, SearchState, Searcher


class RandomGaussian(Searcher):
    name = "random"
    designers = ("box",)

    def __init__(self, sigma: float = 0.1, batch_per_seed: int = 16, seed: int = 0) -> None:
        self.sigma, self.batch_per_seed, self.seed = sigma, batch_per_seed, seed
        self._x0: np.ndarray | None = None
        self._rngs: dict[int, np.random.Generator] = {}

    def start(self, state: SearchState) -> None:
        self._x0 = state.designer.encode(state.seeds).numpy().astype(float).reshape(len(state.seeds), -1)
        self._rngs = {i: np.random.default_rng([self.seed, i, 1]) for i in range(len(state.seeds))}

    def ask(self, state: SearchState) -> list[Proposal]:
        seeds = np.flatnonzero(state.remaining > 0)
        if not len(seeds):
            return []
        b, shape = self.batch_per_seed, tuple(state.designer.input_shape)
        x = np.concatenate([self._x0[i] + self.sigma * self._rngs[int(i)].standard_normal((b, self._x0.shape[1]))
                            for i in seeds])
        x = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), *shape)
        designs = state.designer.decode(state.designer.discretize(state.designer.project(x)))
        return [Proposal(int(i), designs[k * b:(k + 1) * b]) for k, i in enumerate(seeds)]

    def state_dict(self) -> dict[str, Any]:
        return {"streams": {i: rng.bit_generator.state for i, rng in self._rngs.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, stream in state.get("streams", {}).items():
            self._rngs[int(i)].bit_generator.state = stream
