"""The common base of searchers that mutate token rows (molecules' SELFIES, the toy token designer)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from tasks.search.base import Proposal, SearchState, Searcher
from tasks.search.edits import random_edits


class TokenSearcher(Searcher):
    """Keeps every design's token row (encoded once) and turns mutated rows back into designs."""

    designers = ("tokens",)

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self._rows: dict[str, torch.Tensor] = {}

    def rows(self, designer: Any, designs: Sequence[Any]) -> torch.Tensor:
        """Token rows of ``designs`` (all padding for one that cannot be tokenised)."""
        keys = [designer.key(d) for d in designs]
        missing = [k for k in dict.fromkeys(keys) if k not in self._rows]
        if missing:
            indices, failures = designer.token_indices(missing)
            for key, row, failure in zip(missing, indices, failures):
                self._rows[key] = row if failure is None else torch.zeros_like(row)
        return torch.stack([self._rows[k] for k in keys])

    def mutate(self, designer: Any, parents: torch.Tensor, max_edits: int) -> list[Any]:
        """Each parent row with 1 … ``max_edits`` uniformly random edits, decoded."""
        n_edits = torch.randint(1, max_edits + 1, (len(parents),), generator=self.generator)
        children = random_edits(parents, n_edits, len(designer.alphabet), self.generator)
        return designer.decode(designer.one_hot(children))

    @staticmethod
    def proposals(seed_index: Sequence[int], designs: Sequence[Any]) -> list[Proposal]:
        grouped: dict[int, list[Any]] = {}
        for i, d in zip(seed_index, designs):
            grouped.setdefault(int(i), []).append(d)
        return [Proposal(i, ds) for i, ds in grouped.items()]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def active_seeds(state: SearchState) -> np.ndarray:
    return np.flatnonzero(state.remaining > 0)
