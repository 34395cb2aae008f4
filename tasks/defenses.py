"""Training-time defenses beyond adversarial training: TRADES and conservative objective models (pure torch).

* TRADES — Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically Principled Trade-off between Robustness and
  Accuracy", ICML 2019, arXiv:1901.08573. Loss ``L(f(x), y) + β·D(f(x), f(x′))`` with ``x′`` the point of the L∞
  ε-ball (in the input box) that maximises the divergence ``D`` from the clean output, found by PGD from a random
  start. Classification: cross-entropy + β·KL(softmax f(x) ‖ softmax f(x′)), the paper's form. Regression (our
  surrogates): MSE + β·(f(x) − f(x′))², both on standardised targets. β trades accuracy for smoothness (the
  paper's 1/λ; 6 on CIFAR-10 and MNIST); β = 0 is plain training.
* COMs — Trabucco, Kumar, Geng & Levine, "Conservative Objective Models for Effective Offline Model-Based
  Optimization", ICML 2021, arXiv:2107.06882. A surrogate that will be climbed by gradient ascent learns to
  under-estimate where that ascent goes: loss ``MSE + α·(mean f(x′) − mean f(x))`` with ``x′`` reached from the
  training designs ``x`` by the same kind of ascent the design search runs (here a few L2-normalised gradient steps
  in the input box, the search's ``l2`` method), and α adapted by dual ascent on the Lagrangian of
  ``mean f(x′) − mean f(x) ≤ τ`` (the over-estimation limit, in target standard deviations):
  ``α ← max(0, α + η_α·(gap − τ))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tasks.attacks.pgd import PGD
from tasks.attacks.vat import softmax_kl


def _squared_output_difference(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    return (perturbed - reference).reshape(len(reference), -1).pow(2).sum(dim=1)


def trades_perturbation(model: nn.Module, x: torch.Tensor, reference: torch.Tensor, eps: float, steps: int,
                        classification: bool, lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES' inner maximisation: ``argmax_{x′ ∈ ball} D(reference, f(x′))`` by PGD from a random start (the
    divergence's gradient vanishes at ``x′ = x``, so the start must be random). ``reference`` is ``f(x)``, detached."""
    divergence = softmax_kl if classification else _squared_output_difference

    def loss(output: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        return divergence(ref, output)

    return PGD(model, eps, steps, loss=loss, lower=lower, upper=upper, generator=generator)(x, reference.detach())


def trades_robust_term(clean_output: torch.Tensor, adversarial_output: torch.Tensor, classification: bool,
                       scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Mean KL(f(x) ‖ f(x′)) for logits, mean ((f(x) − f(x′))/scale)² for regression; differentiable in both."""
    if classification:
        return softmax_kl(clean_output, adversarial_output).mean()
    diff = (clean_output - adversarial_output) / scale
    return diff.reshape(len(diff), -1).pow(2).sum(dim=1).mean()


def l2_ascent(model: nn.Module, x: torch.Tensor, steps: int, step_size: float,
              lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``steps`` steps of ``x ← clip(x + η·∇f/‖∇f‖₂)`` from every row of ``x``: the design search's ``l2`` ascent
    of the model's own prediction (no ε-ball, only the input box). Detached; the model's mode is restored."""
    was_training = model.training
    model.eval()
    lo = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
    point = x.detach().clone()
    try:
        with torch.enable_grad():
            for _ in range(steps):
                point.requires_grad_(True)
                (grad,) = torch.autograd.grad(model(point).sum(), point)
                norms = grad.reshape(len(grad), -1).norm(dim=1).clamp_min(1e-12)
                step = step_size * grad / norms.reshape(-1, *([1] * (grad.dim() - 1)))
                point = torch.minimum(torch.maximum(point.detach() + step, lo), hi)
    finally:
        model.train(was_training)
    return point.detach()


@dataclass
class ConservativeObjective:
    """The COMs penalty and its Lagrange multiplier.

    Args:
        alpha: the multiplier's starting value (≥ 0).
        limit: τ, the over-estimation allowed on the ascent's points, in target standard deviations.
        alpha_lr: η_α of the dual ascent on α.
        steps, step_size: the inner ascent (L2 steps of size ``step_size`` in the input box).
    """

    alpha: float = 1.0
    limit: float = 0.5
    alpha_lr: float = 0.01
    steps: int = 5
    step_size: float = 0.1

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.alpha_lr >= 0 and self.steps >= 1 and self.step_size > 0):
            raise ValueError(f"COMs needs alpha ≥ 0, alpha_lr ≥ 0, steps ≥ 1, step_size > 0; got {self}")

    def gap(self, model: nn.Module, x: torch.Tensor, scale: torch.Tensor | float = 1.0,
            lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``(mean f(x′) − mean f(x)) / scale``, differentiable in the model's parameters (``x′`` detached)."""
        ascended = l2_ascent(model, x, self.steps, self.step_size, lower, upper)
        return (model(ascended).mean() - model(x).mean()) / scale

    def update(self, gap: float) -> float:
        """Dual ascent: raise α while the over-estimation exceeds the limit, lower it (not below 0) otherwise."""
        self.alpha = max(0.0, self.alpha + self.alpha_lr * (float(gap) - self.limit))
        return self.alpha
