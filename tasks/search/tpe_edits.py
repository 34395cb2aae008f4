"""TPE over token edits (Bergstra et al. 2011, *Algorithms for Hyper-Parameter Optimization*, NeurIPS), one
in-memory Optuna study per seed.

The search space, define-by-run: ``n_edits`` ∈ {1 … max_edits}; per edit a position (0 … the seed's length, the
last one an append) and a token (categorical over the alphabet, padding deleting). Each round every seed's study
asks one trial; the driver verifies it (or not) and the trial is told the true score, the known score of a
repeat, or ``seed score − infeasible_penalty`` for an unchanged or infeasible proposal (free, but TPE must learn
to avoid the region).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from tasks.search.base import FAILED, INFEASIBLE, NOT_SENT, UNCHANGED, Proposal, SearchState, Told
from tasks.search.edits import SUBSTITUTE, apply_edits, lengths
from tasks.search.token_searcher import TokenSearcher, active_seeds


class TPEEdits(TokenSearcher):
    name = "tpe"

    def __init__(self, max_edits: int = 3, startup_trials: int = 10, infeasible_penalty: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__(seed)
        self.max_edits, self.startup_trials, self.infeasible_penalty, self.seed = (
            max_edits, startup_trials, infeasible_penalty, seed)
        self.batch_per_seed = 1
        self._studies: dict[int, Any] = {}
        self._trials: dict[int, Any] = {}

    def _study(self, i: int):
        import optuna

        if i not in self._studies:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=self.seed * 100_003 + i, n_startup_trials=self.startup_trials)
            self._studies[i] = optuna.create_study(direction="maximize", sampler=sampler)
        return self._studies[i]

    def ask(self, state: SearchState) -> list[Proposal]:
        seeds = active_seeds(state)
        if not len(seeds):
            return []
        rows = self.rows(state.designer, [state.seeds[i] for i in seeds])
        size = lengths(rows)
        edited = []
        tokens = list(range(len(state.designer.alphabet)))
        for k, i in enumerate(seeds):
            trial = self._study(int(i)).ask()
            self._trials[int(i)] = trial
            n_edits = trial.suggest_int("n_edits", 1, self.max_edits)
            last = min(int(size[k]), rows.shape[1] - 1)
            edits = [(trial.suggest_int(f"position_{e}", 0, last), trial.suggest_categorical(f"token_{e}", tokens))
                     for e in range(n_edits)]
            positions = torch.tensor([[p for p, _ in edits]])
            edited.append(apply_edits(rows[k:k + 1], torch.full_like(positions, SUBSTITUTE), positions,
                                      torch.tensor([[t for _, t in edits]]))[0])
        designs = state.designer.decode(state.designer.one_hot(torch.stack(edited)))
        return self.proposals(seeds, designs)

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        for t in told:
            trial = self._trials.pop(t.seed_index, None)
            if trial is None:
                continue
            status, value = t.status[0], float(t.scores[0])
            penalty = float(state.seed_scores[t.seed_index]) - self.infeasible_penalty
            if status in (UNCHANGED, INFEASIBLE, FAILED, NOT_SENT) or not np.isfinite(value):
                value = penalty
            self._studies[t.seed_index].tell(trial, value)
