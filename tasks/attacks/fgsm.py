"""Fast Gradient Sign Method.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015, arXiv:1412.6572.
Threat model: white-box, L∞ budget ε, a single step of size ε along the sign of the input gradient.
"""

from __future__ import annotations

import torch

from tasks.attacks.base import Attack


class FGSM(Attack):
    """``x_adv = clip(x + ε · sign(∇ₓ loss(f(x), y)))``."""

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        grad, _ = self.input_gradient(x, y)
        return self.project(x + self.eps * grad.sign(), x)
