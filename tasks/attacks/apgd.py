"""Auto-PGD: PGD with an automatic step-size schedule and momentum, L∞, with restarts.

Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse Parameter-free
Attacks", ICML 2020, arXiv:2003.01690, Algorithm 1. Threat model: white-box, L∞ budget ε in the input box.

Written on our :class:`~tasks.attacks.base.Attack`, so it maximises *any* per-example loss: cross-entropy for a
classifier, or, for a regression surrogate, the prediction error (``squared_error_loss``) or the prediction itself
raised or lowered (``prediction_loss`` and its negative, the two halves of the evaluation flow's regression sweep).
That makes it the evaluation's worst-case probe of a surrogate, where the classification-only AutoAttack of
``torchattacks`` does not apply.

The schedule, per example (Croce & Hein §3.2):

* step size ``η = 2ε`` at first; checkpoints ``w_j = ⌈p_j·N⌉`` with ``p_0 = 0``, ``p_1 = 0.22`` and
  ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``;
* momentum: ``z = P(x_k + η·sign ∇)``, ``x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))`` with α = 0.75
  (α = 1 on the first step);
* at a checkpoint η is halved, and the iterate restarts from the best point so far, if (1) fewer than
  ``ρ = 0.75`` of the steps since the last checkpoint raised the loss, or (2) η was not halved at the last
  checkpoint and the best loss has not improved since it.

The returned point is, per example, the best over iterations and over ``restarts`` random starts.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tasks.attacks.base import Attack, PerExampleLoss, cross_entropy_loss


def checkpoints(steps: int) -> list[int]:
    """Iterations at which the step size is reconsidered: ``⌈p_j·N⌉`` for the paper's ``p_j`` (j ≥ 1)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    points = sorted({math.ceil(q * steps) for q in p[1:] if math.ceil(q * steps) < steps})
    return [w for w in points if w > 0]


class APGD(Attack):
    """Args beyond :class:`Attack`: ``steps`` (N = 100 in the paper), ``restarts`` (≥ 1; the per-example best is
    kept), ``rho`` (0.75) and ``momentum`` (α = 0.75), ``random_start`` (uniform in the ball; the paper starts at a
    random point too), ``generator`` for reproducible starts."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        steps: int = 100,
        restarts: int = 1,
        loss: PerExampleLoss = cross_entropy_loss,
        lower: float | torch.Tensor = 0.0,
        upper: float | torch.Tensor = 1.0,
        generator: torch.Generator | None = None,
        rho: float = 0.75,
        momentum: float = 0.75,
        random_start: bool = True,
    ) -> None:
        super().__init__(model, eps, loss, lower, upper, generator)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be ≥ 1, got steps={steps}, restarts={restarts}")
        if self.eps == float("inf"):
            raise ValueError("APGD needs a finite ε: its step size starts at 2ε")
        self.steps = steps
        self.restarts = restarts
        self.rho = rho
        self.momentum = momentum
        self.random_start = random_start

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.random_start and self.eps > 0):
            return x.clone()
        noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        return self.project(x + (2 * noise - 1) * self.eps, x)

    def _single_run(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x)
        shape = (n,) + (1,) * (x.dim() - 1)
        eta = torch.full(shape, 2.0 * self.eps, dtype=x.dtype, device=x.device)
        marks = set(checkpoints(self.steps))

        x_k = self._start(x)
        grad, loss = self.input_gradient(x_k, y)
        x_best, loss_best, grad_best = x_k.clone(), loss.clone(), grad.clone()
        x_prev = x_k.clone()
        increases = torch.zeros(n, device=x.device)       # steps since the last checkpoint that raised the loss
        since_check = 0
        best_at_check = loss_best.clone()                 # f_max at the last checkpoint
        halved_at_check = torch.ones(n, dtype=torch.bool, device=x.device)  # "reduced" at w_0: condition 2 off

        for k in range(self.steps):
            alpha = 1.0 if k == 0 else self.momentum
            z = self.project(x_k + eta * grad.sign(), x)
            x_next = self.project(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev), x)
            grad_next, loss_next = self.input_gradient(x_next, y)
            increases += (loss_next > loss).float()
            improved = loss_next > loss_best
            x_best[improved], loss_best[improved], grad_best[improved] = (
                x_next[improved], loss_next[improved], grad_next[improved])
            x_prev, x_k, grad, loss = x_k, x_next, grad_next, loss_next
            since_check += 1
            if k + 1 in marks:
                too_few = increases < self.rho * since_check
                stalled = (~halved_at_check) & (loss_best <= best_at_check)
                halve = too_few | stalled
                eta[halve] /= 2.0
                x_k[halve], grad[halve], loss[halve] = x_best[halve], grad_best[halve], loss_best[halve]
                x_prev[halve] = x_best[halve]
                halved_at_check, best_at_check = halve, loss_best.clone()
                increases.zero_()
                since_check = 0
        return x_best, loss_best

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        best_x, best_loss = x.clone(), torch.full((len(x),), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_run, loss_run = self._single_run(x, y)
            better = loss_run > best_loss
            best_x[better], best_loss[better] = x_run[better], loss_run[better]
        return best_x
