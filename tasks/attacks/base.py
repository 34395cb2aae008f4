"""The common base of all attacks: an ε-ball, an input box and a per-example loss to maximise."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: ``loss(model_output, y) -> per-example loss of shape (n,)``; attacks maximise it.
PerExampleLoss = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Classification: the untargeted attack's loss."""
    return F.cross_entropy(logits, y, reduction="none")


def squared_error_loss(prediction: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Regression: push the prediction away from the label, in either direction."""
    return (prediction.reshape(len(prediction), -1) - y.reshape(len(y), -1)).pow(2).sum(dim=1)


def prediction_loss(prediction: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Design: raise the model's own prediction (the label is ignored)."""
    return prediction.reshape(len(prediction), -1).sum(dim=1)


class Attack:
    """Maximise ``loss(model(x_adv), y)`` over ``{x_adv : ‖x_adv − x‖∞ ≤ eps, lower ≤ x_adv ≤ upper}``.

    Args:
        model: a differentiable ``nn.Module``; its training mode is left as it was found.
        eps: radius of the L∞ ball (in input units; ``float('inf')`` for the whole box).
        loss: per-example loss to maximise (see :data:`PerExampleLoss`).
        lower, upper: the input box, scalars or tensors broadcastable to one input.
        generator: random source of attacks that draw noise (random starts, random signs).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        loss: PerExampleLoss = cross_entropy_loss,
        lower: float | torch.Tensor = 0.0,
        upper: float | torch.Tensor = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not eps >= 0:
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        self.model = model
        self.eps = float(eps)
        self.loss = loss
        self.lower = lower
        self.upper = upper
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                return self.perturb(x.detach(), None if y is None else y.detach()).detach()
        finally:
            self.model.train(was_training)

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError  # each attack file implements this

    def per_example_loss(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.loss(self.model(x), y)

    def input_gradient(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed per-example loss w.r.t. ``x`` (examples stay independent), and the losses."""
        x = x.clone().requires_grad_(True)
        losses = self.per_example_loss(x, y)
        (grad,) = torch.autograd.grad(losses.sum(), x)
        return grad, losses.detach()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Clip onto the ε-ball around ``x``, then onto the input box."""
        if self.eps != float("inf"):
            x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps)
        lower = torch.as_tensor(self.lower, dtype=x.dtype, device=x.device)
        upper = torch.as_tensor(self.upper, dtype=x.dtype, device=x.device)
        return torch.minimum(torch.maximum(x_adv, lower), upper)
