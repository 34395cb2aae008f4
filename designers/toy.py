"""Two test problems with ground truth on the object, as BoTorch's test problems carry it.

They are cheap, deterministic and have a known optimum (:attr:`Designer.optimum`) and known optimal design
(``optimal_design``), so tests can assert that a searcher *reaches* the optimum within a stated number of oracle
calls, and one conformance test can exercise every registered designer the same way.

* :class:`TokenMatch`: strings over a small token alphabet, scored by how many positions match a hidden target
  string (OneMax with a target). Same token interface as the molecule designer (``alphabet``, ``max_length``,
  ``token_indices``, ``one_hot``; index 0 pads, like SELFIES ``[nop]``), so every token-edit searcher runs on it.
* :class:`Sphere`: a point in the unit box, scored ``−‖x − x*‖²`` (a concave bowl), the continuous counterpart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from designers.base import ConstraintReport, Designer, OracleResult


class TokenMatch(Designer):
    """Strings of ``length`` tokens from ``alphabet`` (index 0, ``"."``, pads and is dropped by decoding).

    Score: the number of positions ``i`` where the design's ``i``-th token equals the target's, minus the
    difference in length (so padding never helps). Optimum: ``len(target)``, at the target itself.

    Args:
        target: the hidden optimal string (tokens from ``alphabet[1:]``).
        alphabet: token characters; ``alphabet[0]`` is the padding token.
        max_length: positions of the encoding.
        max_distance: constraint: at most this many positions differ from the seed (``None``: unconstrained).

    Example:
        >>> toy = TokenMatch()
        >>> toy.oracle([toy.optimal_design]).scores.tolist() == [toy.optimum]
        True
    """

    name = "tokens"
    settings_outside_oracle = ("max_distance",)

    def __init__(self, target: str = "abcdcbadab", alphabet: str = ".abcd", max_length: int = 12,
                 max_distance: int | None = None) -> None:
        if len(target) > max_length or set(target) - set(alphabet[1:]):
            raise ValueError(f"target {target!r} must use tokens of {alphabet[1:]!r} and fit {max_length} positions")
        self.target, self.alphabet, self.max_length = target, tuple(alphabet), max_length
        self.max_distance = max_distance
        self.input_shape = (max_length, len(alphabet))
        self.lower, self.upper = 0.0, 1.0
        self.optimum = float(len(target))
        self.optimal_design = target
        self.oracle_calls = 0

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        tokens = np.array(self.alphabet[1:])
        return ["".join(rng.choice(tokens, size=len(self.target))) for _ in range(n)]

    def token_indices(self, designs: Sequence[str]) -> tuple[torch.Tensor, list[str | None]]:
        indices = torch.zeros((len(designs), self.max_length), dtype=torch.long)
        failures: list[str | None] = [None] * len(designs)
        for row, design in enumerate(designs):
            if len(design) > self.max_length or set(design) - set(self.alphabet[1:]):
                failures[row] = f"{design!r} is not a string of at most {self.max_length} tokens of {self.alphabet[1:]}"
            else:
                indices[row, : len(design)] = torch.tensor([self.alphabet.index(c) for c in design], dtype=torch.long)
        return indices, failures

    def one_hot(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(indices.long(), len(self.alphabet)).float()

    def encode(self, designs: Sequence[str]) -> torch.Tensor:
        indices, failures = self.token_indices(designs)
        bad = [f for f in failures if f]
        if bad:
            raise ValueError("; ".join(bad))
        return self.one_hot(indices)

    def discretize(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.one_hot(x.argmax(dim=-1))

    def decode(self, x: torch.Tensor) -> list[str]:
        return ["".join(self.alphabet[i] for i in row if i != 0) for row in x.argmax(dim=-1).tolist()]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)

    def _oracle(self, designs: list[str]) -> OracleResult:
        scores = np.array([sum(a == b for a, b in zip(d, self.target)) - abs(len(d) - len(self.target))
                           for d in designs], dtype=float)
        return OracleResult(scores, [None] * len(designs))

    @property
    def bound_to_seed(self) -> bool:
        return self.max_distance is not None

    def constraints(self, designs: Sequence[str], seeds: Sequence[str]) -> ConstraintReport:
        distance = np.array([sum(a != b for a, b in zip(d.ljust(self.max_length, "."), s.ljust(self.max_length, ".")))
                             for d, s in zip(designs, seeds)], dtype=float)
        violations = [None if self.max_distance is None or k <= self.max_distance
                      else f"{int(k)} positions changed > {self.max_distance}" for k in distance]
        return ConstraintReport(violations, {"distance": distance})

    def key(self, design: str) -> str:
        return design

    def parse(self, text: str) -> str:
        design = text.strip()
        _, failures = self.token_indices([design])
        if failures[0]:
            raise ValueError(failures[0])
        return design

    def render(self, pairs, path, captions=None) -> None:
        _text_picture([f"{s} -> {d}" for s, d in pairs], path, captions)


class Sphere(Designer):
    """A point in ``[0, 1]^dimensions``, scored ``−‖x − x*‖²`` (higher is better, optimum 0 at ``x*``).

    Example:
        >>> toy = Sphere()
        >>> float(toy.oracle([toy.optimal_design]).scores[0]) == toy.optimum
        True
    """

    name = "sphere"

    def __init__(self, dimensions: int = 4, centre: Sequence[float] | None = None) -> None:
        self.centre = np.asarray(centre if centre is not None else np.linspace(0.3, 0.7, dimensions), dtype=float)
        self.input_shape = (len(self.centre),)
        self.lower, self.upper = torch.zeros(self.input_shape), torch.ones(self.input_shape)
        self.optimum = 0.0
        self.optimal_design = tuple(float(v) for v in self.centre)
        self.oracle_calls = 0

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple[float, ...]]:
        return [tuple(float(v) for v in row) for row in rng.random((n, len(self.centre)))]

    def encode(self, designs: Sequence[tuple[float, ...]]) -> torch.Tensor:
        return torch.tensor(np.asarray(designs, dtype=float).reshape(len(designs), -1), dtype=torch.float32)

    def decode(self, x: torch.Tensor) -> list[tuple[float, ...]]:
        return [tuple(round(float(v), 6) for v in row) for row in x.detach().cpu().reshape(len(x), -1)]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)

    def _oracle(self, designs: list[tuple[float, ...]]) -> OracleResult:
        x = np.asarray(designs, dtype=float).reshape(len(designs), -1)
        return OracleResult(-((x - self.centre) ** 2).sum(axis=1), [None] * len(designs))

    def key(self, design: tuple[float, ...]) -> str:
        return ",".join(f"{v:.6f}" for v in design)

    def parse(self, text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"not a comma-separated point: {text.strip()!r}") from None
        if len(values) != len(self.centre) or not all(0 <= v <= 1 for v in values):
            raise ValueError(f"{text.strip()!r} is not a point of the unit box in {len(self.centre)} dimensions")
        return values

    def render(self, pairs, path, captions=None) -> None:
        _text_picture([f"{self.key(s)} -> {self.key(d)}" for s, d in pairs], path, captions)


def _text_picture(lines: list[str], path: str, captions: Sequence[str] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 0.4 * len(lines) + 0.5))
    for i, line in enumerate(lines):
        axis.text(0, 1 - (i + 1) / (len(lines) + 1), line + (f"   {captions[i]}" if captions else ""), family="monospace")
    axis.axis("off")
    figure.savefig(path)
    plt.close(figure)
