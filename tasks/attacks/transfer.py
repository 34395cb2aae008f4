"""Black-box transfer attacks: craft on substitute models the attacker trained, replay against the target.

Substitute: Papernot, McDaniel, Goodfellow, Jha, Celik & Swami, "Practical Black-Box Attacks against Machine
Learning", AsiaCCS 2017, arXiv:1602.02697 — the attacker only queries the target's *labels*, trains their own
model on them, crafts white-box examples on it and deploys them against the target (the seed notes' black-box
attack). Ensemble: Liu, Chen, Liu & Song, "Delving into Transferable Adversarial Examples and Black-box
Attacks", ICLR 2017, arXiv:1611.02770 — crafting against the average of several substitutes' softmax outputs
makes the examples transfer far more often.

Threat model: black-box, L∞ budget ε, no gradient (or logit) access to the target; label queries only, and only
while training the substitutes. ``perturb`` never touches the target model. A transfer attack is therefore a
lower bound on white-box strength: if it ever beats PGD on the target, the target's gradients are masked.

Substitutes are trained on the attacker's own inputs labelled by the target (Papernot et al.'s Jacobian-based
augmentation is not used: in-distribution query inputs are available here, which only strengthens the attacker).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tasks.attacks.base import Attack, PerExampleLoss, cross_entropy_loss
from tasks.attacks.pgd import PGD
from tasks.classifiers import predict_labels


class SubstituteEnsemble(nn.Module):
    """Liu et al.'s ensemble: returns ``log(Σᵢ wᵢ softmax(fᵢ(x)))``, so cross-entropy on it is their objective
    ``−log((Σᵢ wᵢ Jᵢ(x))·1_y)`` and argmax is the ensemble's vote."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        w = torch.full((len(members),), 1.0 / len(members)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if len(w) != len(members) or not bool((w >= 0).all()) or float(w.sum()) <= 0:
            raise ValueError(f"need {len(members)} non-negative weights with a positive sum, got {weights!r}")
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = sum(w * F.softmax(member(x), dim=1) for w, member in zip(self.weights, self.members))
        return torch.log(probabilities.clamp_min(1e-30))


class TransferAttack(Attack):
    """PGD-L∞ on one substitute (Papernot et al.) or on an ensemble of substitutes (Liu et al.), then the same
    ``x_adv`` is handed to ``model`` — the target, which the attack never differentiates.

    Args beyond :class:`Attack`: ``substitutes`` (one model, or several for the ensemble), PGD ``steps``,
    ``alpha`` (default ``2.5·ε/steps``), ``restarts`` and ``generator`` for the random starts.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        substitutes: Sequence[nn.Module],
        steps: int = 20,
        alpha: float | None = None,
        restarts: int = 1,
        loss: PerExampleLoss = cross_entropy_loss,
        lower: float | torch.Tensor = 0.0,
        upper: float | torch.Tensor = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, eps, loss, lower, upper)
        if not substitutes:
            raise ValueError("a transfer attack needs at least one substitute model")
        if any(s is model for s in substitutes):
            raise ValueError("the target itself cannot be a substitute: that would be a white-box attack")
        self.source = substitutes[0] if len(substitutes) == 1 else SubstituteEnsemble(substitutes)
        self.inner = PGD(self.source, eps, steps, alpha, True, restarts, loss, lower, upper, generator)

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.inner(x, y)


def label_queries(target: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The only access the attacker has to the target: its predicted labels on the attacker's inputs."""
    return predict_labels(target, x, batch_size)


def train_substitute(
    target: nn.Module,
    substitute: nn.Module,
    x_queries: torch.Tensor,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    validation_fraction: float = 0.1,
) -> float:
    """Train ``substitute`` in place on the target's labels of ``x_queries`` (no defense: the attacker wants the
    target's decision boundary, not robustness). Returns the substitute's agreement with the target on the
    held-out queries, the number that says how good a mimic it is."""
    from tasks.training import Defense, TrainingConfig, train_model  # late: tasks.training imports tasks.attacks

    labels = label_queries(target, x_queries)
    order = torch.randperm(len(x_queries), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(len(order) * validation_fraction))
    val, train = order[:n_val], order[n_val:]
    config = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, defense=Defense("none"))
    train_model(substitute, x_queries[train], labels[train], x_queries[val], labels[val], config,
                task="classification")
    return float((label_queries(substitute, x_queries[val]) == labels[val]).float().mean())
