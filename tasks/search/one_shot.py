"""One-shot gradient search as a searcher: one batched gradient search, then the surrogate's ranking verified in order.

The first :meth:`~OneShotGradient.ask` ascends the trained surrogate from every seed at once — every seed and every
restart in one tensor, never a loop over seeds (:func:`tasks.search.gradient.gradient_search`: iterated FGSM /
L2-PGD on ``−f``, Goodfellow et al. 2015, *Explaining and Harnessing Adversarial Examples*, ICLR; Madry et al. 2018,
*Towards Deep Learning Models Resistant to Adversarial Attacks*, ICLR). ``restarts`` > 1 gives each seed several
start points, PGD's random start (:func:`tasks.search.gradient.random_starts`: the first is the seed itself, the
others uniform in an L∞ ball of ``radius`` on a ``fraction`` of the positions). Every distinct design met on any of a
seed's trajectories is decoded once (:func:`tasks.candidates.decode_trajectory`), the ones that break a constraint
are dropped, and the rest are ranked by the surrogate's prediction (a design met from several starts keeps its best
prediction).

Every round then hands the driver each seed's next ``spares × batch_per_seed`` best candidates not yet verified,
best first; the driver verifies the first ``batch_per_seed`` of them, so the seed's k-th oracle call is its k-th
best candidate — the surrogate's order, whatever the batch size (``batch_per_seed`` only decides how many oracle
calls the verification is cut into). The surrogate is never updated: a seed stops when its budget is spent or its
candidates are used up.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from tasks.candidates import decode_trajectory
from tasks.search.base import INFEASIBLE, REPEATED, UNCHANGED, Proposal, SearchState, Searcher, Told
from tasks.search.gradient import SearchConfig, gradient_search, random_starts


def search_config(params: Any) -> SearchConfig:
    """The gradient search of a :class:`flows.parameters.SearchParameters` (``eps`` None: no ball)."""
    return SearchConfig(method=params.method, steps=params.steps, step_size=params.step_size,
                        eps=float("inf") if params.eps is None else params.eps)


class OneShotGradient(Searcher):
    """Gradient trajectories from every seed, verified in the surrogate's order; see the module's docstring.

    Args:
        model: the trained surrogate, ``(n, *input_shape) -> (n,)``; higher is better.
        config: the gradient search (method, steps, step size, ε-ball).
        restarts: start points per seed (1: the seed only).
        radius, fraction: the random starts' L∞ radius and the fraction of positions they perturb.
        batch_per_seed: designs per seed verified per round (one oracle call per round for all seeds).
        spares: candidates handed over per seed, as a multiple of ``batch_per_seed`` (the driver sends the first
            ``batch_per_seed`` fresh feasible ones; the rest come back next round).
        seed: the random starts' generator seed.
    """

    name = "gradient"

    def __init__(self, model: nn.Module, config: SearchConfig = SearchConfig(), restarts: int = 1,
                 radius: float = 0.0, fraction: float = 1.0, batch_per_seed: int = 16, spares: int = 2,
                 seed: int = 0) -> None:
        if batch_per_seed < 1 or spares < 1:
            raise ValueError(f"batch_per_seed and spares must be ≥ 1, got {batch_per_seed} and {spares}")
        self.model, self.config = model, config
        self.restarts, self.radius, self.fraction, self.seed = restarts, radius, fraction, seed
        self.batch_per_seed, self.spares = batch_per_seed, spares
        #: Every constraint-satisfying candidate, seed by seed, best prediction first (``rank`` 1-based), with
        #: :func:`tasks.candidates.decode_trajectory`'s columns; ``None`` until the search has run.
        self.candidates: pd.DataFrame | None = None
        self._keys: list[list[str]] | None = None
        self._predicted: list[np.ndarray] = []
        self._cursor: list[int] = []
        self._dropped: list[set[str]] = []
        self._parsed: dict[str, Any] = {}
        #: After :meth:`rank`: distinct designs the trajectories met, the share of them satisfying the
        #: constraints, and the surrogate's prediction at each seed (its first start).
        self.designs_visited = 0
        self.satisfied_fraction = 0.0
        self.seed_predicted: np.ndarray | None = None

    # -- the one gradient search -----------------------------------------------------------------------------------
    def rank(self, designer: Any, seeds: Sequence[Any]) -> pd.DataFrame:
        """Run the gradient search from every seed at once and rank its candidates (:attr:`candidates`)."""
        x0 = designer.encode(list(seeds))
        centres, starts, origin = random_starts(x0, self.restarts, self.radius, designer.project,
                                                torch.Generator().manual_seed(self.seed), designer.lower,
                                                designer.upper, self.fraction)
        discretize = partial(designer.discretize, reference=centres)
        trajectory = gradient_search(self.model, centres, self.config, designer.project, discretize, designer.lower,
                                     designer.upper, start=starts)
        table = decode_trajectory(designer, trajectory, [seeds[i] for i in origin.tolist()])
        table["seed_index"] = origin.numpy()[table["seed_index"].to_numpy()]
        self.designs_visited = len(table)
        self.satisfied_fraction = float(table["constraint_satisfied"].mean()) if len(table) else 0.0
        at_start = trajectory.step.numpy() == 0
        self.seed_predicted = np.full(len(seeds), np.nan)
        self.seed_predicted[origin.numpy()[trajectory.seed_index.numpy()[at_start]]] = \
            trajectory.predicted.numpy()[at_start]
        table = table[table["constraint_satisfied"]]
        # A design met from several starts of one seed is one candidate, at its best prediction.
        table = table.sort_values(["seed_index", "predicted"], ascending=[True, False], kind="stable")
        table = table.drop_duplicates(["seed_index", "design"]).reset_index(drop=True)
        table["rank"] = table.groupby("seed_index").cumcount() + 1
        self.candidates = table
        groups = dict(iter(table.groupby("seed_index")))
        empty = table.iloc[:0]
        per_seed = [groups.get(i, empty) for i in range(len(seeds))]
        self._set_ranking([g["design"].tolist() for g in per_seed],
                          [g["predicted"].to_numpy(dtype=float) for g in per_seed])
        return table

    def candidates_per_seed(self, n_seeds: int) -> np.ndarray:
        """How many candidates each seed's trajectories met (after :meth:`rank`)."""
        if self._keys is None:
            raise RuntimeError("the gradient search has not run yet")
        return np.array([len(keys) for keys in self._keys[:n_seeds]])

    def _set_ranking(self, keys: list[list[str]], predicted: list[np.ndarray]) -> None:
        self._keys, self._predicted = keys, predicted
        self._cursor = [0] * len(keys)
        self._dropped = [set() for _ in keys]

    # -- ask / tell --------------------------------------------------------------------------------------------------
    def ask(self, state: SearchState) -> list[Proposal]:
        if self._keys is None:
            self.rank(state.designer, state.seeds)
        want = self.spares * self.batch_per_seed
        proposals = []
        for i in np.flatnonzero(state.remaining > 0).tolist():
            keys, done = self._keys[i], state.scores[i]
            spent = lambda key: key in done or key in self._dropped[i]  # noqa: E731
            while self._cursor[i] < len(keys) and spent(keys[self._cursor[i]]):
                self._cursor[i] += 1                     # verified (or rejected) candidates form a prefix
            chosen = []
            for j in range(self._cursor[i], len(keys)):
                if len(chosen) == want:
                    break
                if not spent(keys[j]):
                    chosen.append(j)
            if chosen:
                proposals.append(Proposal(i, [self._design(state.designer, keys[j]) for j in chosen],
                                          self._predicted[i][chosen]))
        return proposals

    def _design(self, designer: Any, key: str) -> Any:
        if key not in self._parsed:
            self._parsed[key] = designer.parse(key)
        return self._parsed[key]

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        # The candidates passed the constraints already; one the driver still turns away is never handed out again.
        for t in told:
            self._dropped[t.seed_index].update(k for k, s in zip(t.keys, t.status)
                                               if s in (INFEASIBLE, REPEATED, UNCHANGED))

    # -- resumption --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._keys is None:
            return {}
        return {"keys": self._keys, "predicted": [p.tolist() for p in self._predicted],
                "dropped": [sorted(d) for d in self._dropped]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "keys" in state:
            self._set_ranking([list(k) for k in state["keys"]],
                              [np.asarray(p, dtype=float) for p in state["predicted"]])
            self._dropped = [set(d) for d in state["dropped"]]
