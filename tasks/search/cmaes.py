"""CMA-ES per seed on a box designer's encoding (cars: 12 numbers in [0, 1]), started at the seed.

(μ/μ_w, λ)-CMA-ES with the update equations, default population and learning rates of Hansen (2016), *The CMA
Evolution Strategy: A Tutorial* (arXiv:1604.00772). Candidates are repaired by ``designer.project`` (the class
rules) and the repaired design is what the oracle scores; CMA-ES is told ``score − repair_penalty·‖x − repaired‖²``
so it learns to stay inside. Infeasible or unchanged candidates cost no call and are told ``seed score −
infeasible_penalty``; a repeat is told its known score.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from tasks.search.base import SCORED, Proposal, REPEATED, SearchState, Searcher, Told


class CMAES:
    """The strategy itself, maximising.

    Example:
        >>> es = CMAES(np.zeros(2), 0.5, np.random.default_rng(0))
        >>> for _ in range(60):
        ...     x = es.ask()
        ...     es.tell(x, -((x - 1.0) ** 2).sum(axis=1))
        >>> bool(np.allclose(es.mean, 1.0, atol=1e-2))
        True
    """

    def __init__(self, mean: np.ndarray, sigma: float, rng: np.random.Generator, population: int | None = None):
        n = len(mean)
        self.mean, self.sigma, self.rng, self.n = np.asarray(mean, dtype=float).copy(), float(sigma), rng, n
        self.population = population or 4 + int(3 * np.log(n))
        mu = self.population // 2
        weights = np.log((self.population + 1) / 2) - np.log(np.arange(1, mu + 1))
        self.weights = weights / weights.sum()
        self.mu_eff = 1.0 / (self.weights**2).sum()
        self.c_c = (4 + self.mu_eff / n) / (n + 4 + 2 * self.mu_eff / n)
        self.c_s = (self.mu_eff + 2) / (n + self.mu_eff + 5)
        self.c_1 = 2 / ((n + 1.3) ** 2 + self.mu_eff)
        self.c_mu = min(1 - self.c_1, 2 * (self.mu_eff - 2 + 1 / self.mu_eff) / ((n + 2) ** 2 + self.mu_eff))
        self.d_s = 1 + 2 * max(0.0, np.sqrt((self.mu_eff - 1) / (n + 1)) - 1) + self.c_s
        self.chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
        self.p_c, self.p_s = np.zeros(n), np.zeros(n)
        self.C, self.B, self.D = np.eye(n), np.eye(n), np.ones(n)
        self.generation = 0

    def ask(self) -> np.ndarray:
        """λ candidates ``mean + σ·B·D·z``, z standard normal."""
        z = self.rng.standard_normal((self.population, self.n))
        return self.mean + self.sigma * (z * self.D) @ self.B.T

    def tell(self, x: np.ndarray, values: np.ndarray) -> None:
        """Update from the candidates ``x`` (as asked) and their values (higher is better)."""
        best = np.argsort(-np.asarray(values, dtype=float), kind="stable")[: len(self.weights)]
        y = (x[best] - self.mean) / self.sigma
        y_w = self.weights @ y
        self.mean = self.mean + self.sigma * y_w
        inv_sqrt_c = self.B @ np.diag(1 / self.D) @ self.B.T
        self.p_s = (1 - self.c_s) * self.p_s + np.sqrt(self.c_s * (2 - self.c_s) * self.mu_eff) * inv_sqrt_c @ y_w
        self.generation += 1
        norm_ps = np.linalg.norm(self.p_s)
        h_s = norm_ps / np.sqrt(1 - (1 - self.c_s) ** (2 * self.generation)) / self.chi_n < 1.4 + 2 / (self.n + 1)
        self.p_c = (1 - self.c_c) * self.p_c + h_s * np.sqrt(self.c_c * (2 - self.c_c) * self.mu_eff) * y_w
        rank_mu = (y.T * self.weights) @ y
        self.C = ((1 - self.c_1 - self.c_mu) * self.C
                  + self.c_1 * (np.outer(self.p_c, self.p_c) + (1 - h_s) * self.c_c * (2 - self.c_c) * self.C)
                  + self.c_mu * rank_mu)
        self.sigma *= float(np.exp((self.c_s / self.d_s) * (norm_ps / self.chi_n - 1)))
        self.C = (self.C + self.C.T) / 2
        eigenvalues, self.B = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(eigenvalues, 1e-20))


class CMAESSearch(Searcher):
    """One :class:`CMAES` per seed; every round each seed's generation is one proposal."""

    name = "cmaes"
    designers = ("box",)

    def __init__(self, sigma: float = 0.1, seed: int = 0, repair_penalty: float = 10.0,
                 infeasible_penalty: float = 1.0) -> None:
        self.sigma, self.seed = sigma, seed
        self.repair_penalty, self.infeasible_penalty = repair_penalty, infeasible_penalty
        self._es: dict[int, CMAES] = {}
        self._asked: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def start(self, state: SearchState) -> None:
        x0 = state.designer.encode(state.seeds).numpy().astype(float)
        self._es = {i: CMAES(x0[i], self.sigma, np.random.default_rng([self.seed, i])) for i in range(len(x0))}
        self.batch_per_seed = self._es[0].population

    def ask(self, state: SearchState) -> list[Proposal]:
        seeds = [i for i in np.flatnonzero(state.remaining > 0) if self._es[int(i)].generation < 10_000]
        if not seeds:
            return []
        x = np.stack([self._es[int(i)].ask() for i in seeds])                    # (seeds, λ, d)
        flat = torch.as_tensor(x.reshape(-1, x.shape[-1]), dtype=torch.float32)
        repaired = state.designer.discretize(state.designer.project(flat))
        designs = state.designer.decode(repaired)
        distance = ((flat - repaired) ** 2).sum(dim=1).numpy().reshape(x.shape[:2])
        per = x.shape[1]
        out = []
        for k, i in enumerate(seeds):
            self._asked[int(i)] = (x[k], distance[k])
            out.append(Proposal(int(i), designs[k * per:(k + 1) * per]))
        return out

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        for t in told:
            x, distance = self._asked.pop(t.seed_index)
            penalty = float(state.seed_scores[t.seed_index]) - self.infeasible_penalty
            values = np.array([v if s in (SCORED, REPEATED) and np.isfinite(v) else penalty
                               for s, v in zip(t.status, t.scores)])
            # A repeat within the generation has no score of its own: it takes its first copy's.
            first = {}
            for j, key in enumerate(t.keys):
                first.setdefault(key, j)
                if not np.isfinite(t.scores[j]) and t.status[j] == REPEATED:
                    values[j] = values[first[key]]
            if state.remaining[t.seed_index] > 0:
                self._es[t.seed_index].tell(x, values - self.repair_penalty * distance)
