"""Several searchers from the same seeds in one driver run: all of them share every round's oracle call.

The driver already searches every seed in lockstep (one oracle call per round for all seeds). :class:`Lockstep`
extends that to independent repeats of a search — the same method with different searcher seeds, as a benchmark's
repeats — by presenting ``len(searchers) × len(seeds)`` starts to the driver: start ``r·n + i`` is seed ``i`` of
searcher ``r``. Each searcher sees a :class:`~tasks.search.base.SearchState` of its own seeds only (views of the
driver's state), so it asks, and is told, exactly what it would be in a run of its own: wherever the oracle scores a
design independently of the others in its call, repeat ``r``'s table equals ``run_search(searchers[r], …)``'s; only
the number of oracle calls they are cut into shrinks (what a GPU oracle, which costs per call, pays for).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tasks.search.base import Proposal, SearchState, Searcher, Told


class Lockstep(Searcher):
    """``searchers`` (one per repeat), each over the same ``n_seeds`` seeds; run it on ``seeds * len(searchers)``
    (:func:`run_lockstep` does)."""

    name = "lockstep"

    def __init__(self, searchers: Sequence[Searcher], n_seeds: int) -> None:
        if not searchers:
            raise ValueError("lockstep needs at least one searcher")
        self.searchers, self.n = list(searchers), int(n_seeds)
        self.designers = tuple(set.intersection(*(set(s.designers) for s in self.searchers)))
        self.batch_per_seed = max(s.batch_per_seed for s in self.searchers)
        self._states: list[SearchState] = []

    def _slice(self, r: int) -> slice:
        return slice(r * self.n, (r + 1) * self.n)

    def start(self, state: SearchState) -> None:
        if len(state.seeds) != self.n * len(self.searchers):
            raise ValueError(f"lockstep of {len(self.searchers)} searchers over {self.n} seeds got "
                             f"{len(state.seeds)} starts")
        self._states = []
        for r, searcher in enumerate(self.searchers):
            part = self._slice(r)
            sub = SearchState(state.designer, state.seeds[part], state.seed_scores[part], state.calls_per_seed[part])
            sub.used = state.used[part]                        # numpy views: the driver's updates show through
            sub.calls_per_seed = state.calls_per_seed[part]
            sub.scores, sub.designs = state.scores[part], state.designs[part]  # the same dicts, filled in place
            self._states.append(sub)
            searcher.start(sub)
        batches = {s.batch_per_seed for s in self.searchers}
        if len(batches) > 1:
            raise ValueError(f"lockstep searchers send different batches per seed: {sorted(batches)}")
        self.batch_per_seed = batches.pop()

    def ask(self, state: SearchState) -> list[Proposal]:
        out = []
        for r, (searcher, sub) in enumerate(zip(self.searchers, self._states)):
            sub.round = state.round
            if not (sub.remaining > 0).any():
                continue  # this repeat is done: a run of its own would have stopped asking
            out += [replace(p, seed_index=p.seed_index + r * self.n) for p in searcher.ask(sub)]
        return out

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        parts: list[list[Told]] = [[] for _ in self.searchers]
        for t in told:
            r = t.seed_index // self.n
            parts[r].append(replace(t, seed_index=t.seed_index - r * self.n))
        for searcher, sub, part in zip(self.searchers, self._states, parts):
            searcher.tell(sub, part)

    def state_dict(self) -> dict[str, Any]:
        return {"searchers": [s.state_dict() for s in self.searchers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for searcher, saved in zip(self.searchers, state.get("searchers", [])):
            searcher.load_state_dict(saved)


def split_repeats(table: pd.DataFrame, n_seeds: int, repeats: int) -> list[pd.DataFrame]:
    """A lockstep run's table cut into one table per repeat, seed indices back to ``0 … n_seeds − 1``."""
    out = []
    for r in range(repeats):
        part = table[(table["seed_index"] >= r * n_seeds) & (table["seed_index"] < (r + 1) * n_seeds)]
        part = part.assign(seed_index=part["seed_index"].to_numpy(dtype=int) - r * n_seeds).reset_index(drop=True)
        out.append(part)
    return out


def repeat_counts(calls_per_seed: int | Sequence[int], n_seeds: int, repeats: int) -> np.ndarray:
    """The per-start budget of a lockstep run: the per-seed budget, once per repeat."""
    return np.tile(np.broadcast_to(np.asarray(calls_per_seed, dtype=int), (n_seeds,)), repeats)
