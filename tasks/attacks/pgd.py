"""Projected Gradient Descent (on the negative loss), L∞, with random start and restarts.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018, arXiv:1706.06083. Threat model: white-box, L∞ budget ε; iterated signed steps of size ``alpha``,
each followed by projection onto the ε-ball and the input box. With restarts the per-example worst case over
restarts is returned (not the best restart on average).
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.attacks.base import Attack, PerExampleLoss, cross_entropy_loss


class PGD(Attack):
    """Args beyond :class:`Attack`: ``steps``, step size ``alpha`` (default ``2.5·ε/steps``, Madry et al.),
    ``random_start`` (uniform in the ball) and ``restarts`` (≥ 1), ``generator`` for reproducible starts."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: PerExampleLoss = cross_entropy_loss,
        lower: float | torch.Tensor = 0.0,
        upper: float | torch.Tensor = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, eps, loss, lower, upper, generator)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be ≥ 1, got steps={steps}, restarts={restarts}")
        self.steps = steps
        self.alpha = 2.5 * self.eps / steps if alpha is None else float(alpha)
        self.random_start = random_start
        self.restarts = restarts

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        best_x, best_loss = x.clone(), torch.full((len(x),), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_adv = x.clone()
            if self.random_start and self.eps > 0:
                noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
                if self.eps == float("inf"):  # uniform in the whole box
                    lower = torch.as_tensor(self.lower, dtype=x.dtype, device=x.device)
                    upper = torch.as_tensor(self.upper, dtype=x.dtype, device=x.device)
                    x_adv = lower + noise * (upper - lower)
                else:
                    x_adv = self.project(x + (2 * noise - 1) * self.eps, x)
            for _ in range(self.steps):
                grad, _ = self.input_gradient(x_adv, y)
                x_adv = self.project(x_adv + self.alpha * grad.sign(), x)
            with torch.no_grad():
                loss = self.per_example_loss(x_adv, y)
            better = loss > best_loss
            best_x[better], best_loss[better] = x_adv[better], loss[better]
        return best_x
