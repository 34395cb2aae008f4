"""Score modifiers: map a raw property (a similarity, a logP, an atom count) onto [0, 1], 1 where it is wanted.

Written from the definitions in Brown et al. 2019, *GuacaMol: Benchmarking Models for de Novo Molecular Design*
(J. Chem. Inf. Model. 59, 1096), section "Goal-directed benchmarks" and its supplement; the PMO benchmark (Gao et
al. 2022) reuses them unchanged. Each modifier is a small frozen dataclass so a task table can be printed and
compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gaussian:
    """``exp(-½((x − μ)/σ)²)``: 1 at the target value μ, falling off both ways."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return math.exp(-0.5 * ((x - self.mu) / self.sigma) ** 2)


@dataclass(frozen=True)
class MinGaussian:
    """Half a Gaussian for "at most μ": 1 for ``x ≤ μ``, the Gaussian's right flank above."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return Gaussian(self.mu, self.sigma)(max(x, self.mu))


@dataclass(frozen=True)
class MaxGaussian:
    """Half a Gaussian for "at least μ": 1 for ``x ≥ μ``, the Gaussian's left flank below."""

    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return Gaussian(self.mu, self.sigma)(min(x, self.mu))


@dataclass(frozen=True)
class Clipped:
    """Linear from ``(lower_x, low)`` to ``(upper_x, high)``, clipped to ``[low, high]``: a similarity of
    ``upper_x`` or more is as good as a perfect one."""

    upper_x: float
    lower_x: float = 0.0
    high: float = 1.0
    low: float = 0.0

    def __call__(self, x: float) -> float:
        slope = (self.high - self.low) / (self.upper_x - self.lower_x)
        return min(self.high, max(self.low, self.high + slope * (x - self.upper_x)))


@dataclass(frozen=True)
class Identity:
    """The raw value unchanged (a plain Tanimoto similarity, QED)."""

    def __call__(self, x: float) -> float:
        return float(x)


def arithmetic_mean(values: list[float]) -> float:
    return sum(values) / len(values)


def geometric_mean(values: list[float]) -> float:
    """``(∏ v)^(1/n)``: any component at 0 makes the whole 0 (every goal must be met a little)."""
    product = 1.0
    for v in values:
        product *= v
    return product ** (1.0 / len(values)) if product > 0 else 0.0
