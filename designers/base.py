"""The protocol every design domain implements.

A designer owns its representation and its oracle (the Design-Bench rule): search algorithms see only tensors
and never call the oracle behind the designer's back, so every oracle call is counted here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class OracleResult:
    """True scores of a batch of designs.

    ``scores[i]`` is NaN exactly when ``failures[i]`` names why design ``i`` could not be scored; ``extras`` holds
    per-design side quantities (e.g. QED and SA beside penalized logP, or C_D and mass beside top speed).
    """

    scores: np.ndarray
    failures: list[str | None]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @cached_property
    def valid(self) -> np.ndarray:
        """Built once per result (searches index it per design); read-only, since every caller shares it."""
        return _read_only(np.array([f is None for f in self.failures], dtype=bool))


@dataclass(frozen=True)
class ConstraintReport:
    """Per design: ``violations[i]`` is ``None`` when design ``i`` satisfies every constraint, else the reason;
    ``values`` holds the constrained quantities themselves (e.g. similarity to the seed) for the designs table."""

    violations: list[str | None]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @cached_property
    def satisfied(self) -> np.ndarray:
        """Built once per report (indexing a fresh array per design was quadratic); read-only, as it is shared."""
        return _read_only(np.array([v is None for v in self.violations], dtype=bool))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class Designer:
    """A design domain: a relaxed tensor representation, its constraints and its true oracle.

    The base owns the oracle's count (Design-Bench's rule): :meth:`oracle` validates, counts every design passed
    in exactly once and calls the domain's :meth:`_oracle`, so no search algorithm and no new designer can score a
    design without it being counted. :meth:`discretize` and :meth:`report` have defaults here, so callers never
    ask whether a designer has them.

    Attributes:
        name: short identifier used on the command line and in MLflow (``"molecule"``, ``"car"``).
        input_shape: shape of one encoded design (without the batch dimension).
        lower, upper: bounds of the relaxed box the search moves in (tensors broadcastable to ``input_shape``).
        oracle_calls: number of designs scored by :meth:`oracle` so far.
        settings_outside_oracle: names of settings that never change an oracle score (constraints, worker
            counts), left out of the cache key of oracle labels.
        optimum: the best score any design can reach, where it is known (test problems); ``None`` otherwise.
        bound_to_seed: whether a constraint keeps each design near its own seed (a similarity or distance
            bound); without one a search may mix the lineages of different seeds.
    """

    name: str
    input_shape: tuple[int, ...]
    lower: float | torch.Tensor = 0.0
    upper: float | torch.Tensor = 1.0
    settings_outside_oracle: tuple[str, ...] = ()
    optimum: float | None = None
    oracle_calls: int = 0

    @property
    def bound_to_seed(self) -> bool:
        return False

    def oracle(self, designs: Sequence[Any]) -> OracleResult:
        """Score designs with the true objective (higher is better); every design passed in counts once (an empty
        call costs nothing and never reaches :meth:`_oracle`)."""
        designs = list(designs)
        if not designs:
            return OracleResult(np.array([], dtype=float), [])
        self.oracle_calls += len(designs)
        result = self._oracle(designs)
        if len(result) != len(designs) or len(result.failures) != len(designs):
            raise RuntimeError(f"{self.name} oracle returned {len(result)} scores for {len(designs)} designs")
        return result

    def _oracle(self, designs: list[Any]) -> OracleResult:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` designs from the designer's data distribution."""
        raise NotImplementedError

    def encode(self, designs: Sequence[Any]) -> torch.Tensor:
        """Designs → tensor of shape ``(n, *input_shape)``; raises ``ValueError`` naming what cannot be encoded."""
        raise NotImplementedError

    def decode(self, x: torch.Tensor) -> list[Any]:
        """Tensor (possibly relaxed, off the data manifold) → the nearest concrete designs."""
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Map any tensor back onto the feasible set of the relaxed representation."""
        return x

    def discretize(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The concrete point a relaxed tensor decodes to (the identity for continuous designs)."""
        return x

    def constraints(self, designs: Sequence[Any], seeds: Sequence[Any]) -> ConstraintReport:
        """Check each design against the user's constraints, relative to its own seed (``seeds[i]``)."""
        return ConstraintReport([None] * len(designs))

    def report(self, designs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Side quantities shown beside the objective in tables (never steering a search, never counted)."""
        return {}

    def key(self, design: Any) -> str:
        """A canonical text form: equal designs have equal keys (de-duplication, tables, caching)."""
        return str(design)

    def parse(self, text: str) -> Any:
        """The inverse of :meth:`key`; raises ``ValueError`` naming the culprit on bad input."""
        raise NotImplementedError

    def render(self, pairs: Sequence[tuple[Any, Any]], path: str, captions: Sequence[str] | None = None) -> None:
        """Draw (seed, design) pairs side by side into a PNG at ``path``."""
        raise NotImplementedError


def designer_fingerprint(designer: Designer, oracle_only: bool = True) -> str:
    """The designer's name and plain settings: what decides its oracle's answers.

    Settings a designer lists in ``settings_outside_oracle`` (a similarity threshold, a worker count) are left
    out: they never change a score, so changing them must not relabel the data. With ``oracle_only=False`` they
    are kept: a search's state depends on its constraints (a loop checkpointed at δ = 0.4 is not one at δ = 0.6).
    """
    outside = (set(getattr(designer, "settings_outside_oracle", ())) if oracle_only else {"workers", "threads"}) | {
        "oracle_calls"}
    settings = {
        k: v for k, v in sorted(vars(designer).items())
        if not k.startswith("_") and k not in outside and isinstance(v, (str, int, float, bool, type(None)))
    }
    return f"{designer.name}:{json.dumps(settings, sort_keys=True)}"
