"""Virtual adversarial perturbation (needs no labels).

Miyato, Maeda, Koyama & Ishii, "Virtual Adversarial Training: A Regularization Method for Supervised and
Semi-Supervised Learning", IEEE TPAMI 2018, arXiv:1704.03976. The direction that most changes the model's own
output is found by power iteration on the divergence between f(x) and f(x + ξd); the perturbation has L2 norm ε
per example (the paper's threat model). For regression the divergence is the squared difference of predictions;
for classification it is KL(softmax f(x) ‖ softmax f(x + r)).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_difference(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Per-example divergence for regression outputs."""
    return (perturbed - reference).reshape(len(reference), -1).pow(2).sum(dim=1)


def softmax_kl(reference_logits: torch.Tensor, perturbed_logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p ‖ p̂) for classification logits."""
    p = F.softmax(reference_logits, dim=1)
    return (p * (F.log_softmax(reference_logits, dim=1) - F.log_softmax(perturbed_logits, dim=1))).sum(dim=1)


def _l2_normalize(d: torch.Tensor) -> torch.Tensor:
    norms = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-12)
    return d / norms.reshape(-1, *([1] * (d.dim() - 1)))


class VirtualAdversarial:
    """``r_adv = ε · d / ‖d‖₂`` with ``d`` from ``power_iterations`` steps of ``d ← ∇_d D(f(x), f(x + ξd))``.

    Unlike the other attacks it is not box-projected: VAT measures the local smoothness of the model, not
    the plausibility of the perturbed input. :meth:`loss` gives the local distributional smoothness (LDS)
    penalty, the quantity VAT training minimises.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        xi: float = 1e-6,
        power_iterations: int = 1,
        divergence: Divergence = squared_difference,
        generator: torch.Generator | None = None,
    ) -> None:
        if not eps >= 0:
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        self.model = model
        self.eps = float(eps)
        self.xi = xi
        self.power_iterations = power_iterations
        self.divergence = divergence
        self.generator = generator

    def perturbation(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        d = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        for _ in range(self.power_iterations):
            d = (self.xi * _l2_normalize(d)).requires_grad_(True)
            distance = self.divergence(reference, self.model(x + d)).sum()
            (d,) = torch.autograd.grad(distance, d)
        return self.eps * _l2_normalize(d.detach())

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with torch.enable_grad():
            reference = self.model(x).detach()
            return (x + self.perturbation(x.detach(), reference)).detach()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean LDS over the batch; differentiable w.r.t. the model's parameters (the reference is detached)."""
        reference = self.model(x).detach()
        r_adv = self.perturbation(x.detach(), reference)
        return self.divergence(reference, self.model(x + r_adv)).mean()
