"""Random-sign noise of the same L∞ norm as FGSM: the baseline every attack must beat.

Used as in Goodfellow et al. (ICLR 2015) and Carlini et al., "On Evaluating Adversarial Robustness" (2019),
arXiv:1902.06705: if random noise hurts as much as a gradient attack, the gradient attack is broken.
Threat model: none (no model access); a random corner of the ε-ball.
"""

from __future__ import annotations

import torch

from tasks.attacks.base import Attack


class RandomNoise(Attack):
    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        signs = torch.randint(0, 2, x.shape, generator=self.generator).to(device=x.device, dtype=x.dtype) * 2 - 1
        return self.project(x + self.eps * signs, x)
