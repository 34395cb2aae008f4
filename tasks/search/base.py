"""The searcher protocol: Optuna's ask/tell shape, for design search under a per-seed oracle budget.

A searcher proposes, the driver (:func:`tasks.search.driver.run_search`) disposes. Each round the driver calls
:meth:`Searcher.ask` once for all seeds, de-duplicates what comes back, checks every constraint that needs no
oracle, keeps at most ``batch_per_seed`` designs per seed (never more than the seed's remaining budget), scores
them in one oracle call and reports every outcome through :meth:`Searcher.tell` — scored, infeasible (with the
reason), repeated, unchanged or not sent. A searcher therefore never calls the oracle and never counts calls;
it only ranks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

#: Outcome of one proposed design (:attr:`Told.status`).
SCORED, FAILED, INFEASIBLE, REPEATED, UNCHANGED, NOT_SENT = (
    "scored", "oracle failure", "infeasible", "repeated", "unchanged", "not sent")


@dataclass
class Proposal:
    """One seed's candidates, best first; ``predicted`` (optional) is the searcher's own estimate of each, kept
    beside the true score so transfer rate and gap can be measured.

    An empty ``designs`` says "nothing for this seed this round, ask again" (the round counts towards the
    driver's patience); a seed with no proposal at all is finished."""

    seed_index: int
    designs: list[Any]
    predicted: np.ndarray | None = None


@dataclass
class Told:
    """What became of a :class:`Proposal`: per design its key, :data:`status` and true score (NaN unless
    scored; for a repeated design the score it already had)."""

    seed_index: int
    designs: list[Any]
    keys: list[str]
    status: list[str]
    scores: np.ndarray
    reasons: list[str | None]


@dataclass
class SearchState:
    """What every searcher may read: the seeds, what the oracle has said so far and the budget left.

    ``scores[i]`` maps a design key verified for seed ``i`` to its true score (NaN for an oracle failure);
    ``designs[i]`` maps the key to the design itself.
    """

    designer: Any
    seeds: list[Any]
    seed_scores: np.ndarray
    calls_per_seed: np.ndarray
    used: np.ndarray = field(init=False)
    round: int = 0
    scores: list[dict[str, float]] = field(init=False)
    designs: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.seed_scores = np.asarray(self.seed_scores, dtype=float)
        self.calls_per_seed = np.broadcast_to(np.asarray(self.calls_per_seed, dtype=int), (len(self.seeds),)).copy()
        self.used = np.zeros(len(self.seeds), dtype=int)
        self.scores = [{} for _ in self.seeds]
        self.designs = [{} for _ in self.seeds]
        self.seed_keys = [self.designer.key(s) for s in self.seeds]

    @property
    def remaining(self) -> np.ndarray:
        return self.calls_per_seed - self.used

    def best(self, seed_index: int, k: int = 1) -> list[tuple[Any, float]]:
        """The seed and its best verified designs, best first, at most ``k`` (the incumbents)."""
        scored = [(self.designs[seed_index][key], s) for key, s in self.scores[seed_index].items() if np.isfinite(s)]
        pool = [(self.seeds[seed_index], float(self.seed_scores[seed_index]))] + scored
        return sorted(pool, key=lambda pair: -pair[1])[:k]

    def known_keys(self) -> set[str]:
        """The keys of every seed and of every design verified for any seed: what a de novo search, one search
        over all its starts, need never send to the oracle again."""
        return {key for scores in self.scores for key in scores} | set(self.seed_keys)

    def best_scores(self) -> np.ndarray:
        """Per seed, the best true score known (the seed's own counts)."""
        return np.array([self.best(i)[0][1] for i in range(len(self.seeds))])


class Searcher(ABC):
    """Base of every search method: ``ask`` ranks candidates per seed, ``tell`` learns from the oracle.

    Attributes:
        name: the method's name in tables, JSON and the CLI.
        designers: the design domains it supports by kind: ``"tokens"`` (token sequences: molecules, the toy
            :class:`designers.toy.TokenMatch`) and/or ``"box"`` (continuous box encodings: cars, the toy sphere).
        batch_per_seed: at most this many designs per seed go to the oracle each round.
    """

    name: ClassVar[str]
    designers: ClassVar[tuple[str, ...]] = ("tokens", "box")
    batch_per_seed: int = 1

    @staticmethod
    def supports(designer: Any) -> bool:
        """Whether this method can search ``designer`` beyond its kind (e.g. graph operators need molecules)."""
        return True

    def start(self, state: SearchState) -> None:
        """Called once before the first round (e.g. to train surrogates)."""

    @abstractmethod
    def ask(self, state: SearchState) -> list[Proposal]:
        """Candidates for the seeds still searching (``state.remaining > 0``), best first per seed."""

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        """Learn from a round's outcomes (``state`` already holds the new scores)."""

    def round_metrics(self) -> dict[str, float]:
        """The searcher's own numbers about the round just told, added to the driver's round summary (and so
        to the MLflow run's per-round metrics)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed search needs besides the verified designs (tensors and plain Python only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


def designer_kind(designer: Any) -> str:
    """``"tokens"`` for designers with a token interface (``token_indices``), else ``"box"``."""
    return "tokens" if hasattr(designer, "token_indices") else "box"
