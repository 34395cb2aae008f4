"""An ensemble of surrogates trained with one defense on bootstraps of the data (pure torch).

The lecture's ensemble point turned around: an adversarial perturbation that fools one network often fools
another, but a design change that raises *every* member's prediction is more likely to raise the oracle's. The
members differ in seed and bootstrap sample (Lakshminarayanan et al. 2017, *Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles*, NeurIPS); their spread is the acquisition's uncertainty.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from tasks.surrogate import Surrogate
from tasks.training import TrainingConfig, TrainingHistory, train_model


class Ensemble(nn.Module):
    """``M`` surrogates; :meth:`forward` returns their predictions ``(M, n)`` in oracle units."""

    def __init__(self, members: Sequence[Surrogate]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])

    def acquisition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """Mean + β·std over the members (β = 0 greedy, > 0 optimistic, < 0 conservative)."""
        predictions = self(x)
        spread = predictions.std(dim=0, unbiased=False) if len(self.members) > 1 else torch.zeros_like(predictions[0])
        return predictions.mean(dim=0) + beta * spread

    @torch.no_grad()
    def predict_tokens(self, rows: torch.Tensor, vocabulary: int, chunk: int = 8192) -> torch.Tensor:
        """Exact predictions ``(M, n)`` on one-hot token rows given as indices ``(n, L)``.

        The first layer of a surrogate on a one-hot input is a sum of one weight column per position, so it is
        computed as an embedding-bag sum (L columns gathered) instead of a dense product with L·V inputs: the
        same numbers, ~V times less work, which is what lets a round score hundreds of thousands of edits.
        """
        length = rows.shape[1]
        offsets = (torch.arange(length, device=rows.device) * vocabulary)[None]
        out = []
        for member in self.members:
            first, rest = member.net[1], member.net[2:]
            table = first.weight.t().contiguous()                             # (L·V, hidden), rows gathered
            parts = []
            for start in range(0, len(rows), chunk):
                index = rows[start:start + chunk] + offsets
                hidden = nn.functional.embedding_bag(index, table, mode="sum") + first.bias
                parts.append(rest(hidden).squeeze(-1) * member.target_std + member.target_mean)
            out.append(torch.cat(parts) if parts else rows.new_zeros(0, dtype=torch.float32))
        return torch.stack(out)


def train_ensemble(
    input_shape: tuple[int, ...], hidden: tuple[int, ...], config: TrainingConfig, size: int,
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    x_unlabelled: torch.Tensor | None = None, lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0,
    bootstrap: bool = True,
) -> tuple[Ensemble, list[TrainingHistory]]:
    """``size`` surrogates with ``config``'s defense, member ``m`` with seed ``config.seed + m`` on its own
    bootstrap sample (member 0 on the data itself, so a one-member ensemble is the plain surrogate)."""
    members, histories = [], []
    for m in range(size):
        generator = torch.Generator().manual_seed(config.seed * 7919 + m)
        index = (torch.randint(len(x_train), (len(x_train),), generator=generator) if bootstrap and m > 0
                 else torch.arange(len(x_train)))
        model = Surrogate(input_shape, hidden)
        model.set_target_scale(y_train)
        histories.append(train_model(model, x_train[index], y_train[index], x_val, y_val,
                                     replace(config, seed=config.seed + m), "regression", x_unlabelled, lower, upper))
        members.append(model)
    return Ensemble(members), histories


def fine_tune(ensemble: Ensemble, config: TrainingConfig, epochs: int, x_train: torch.Tensor, y_train: torch.Tensor,
              x_unlabelled: torch.Tensor | None = None, lower: float | torch.Tensor = 0.0,
              upper: float | torch.Tensor = 1.0, round_number: int = 0) -> None:
    """Warm-start every member for ``epochs`` more epochs on the grown data, with the same defense."""
    if epochs < 1:
        return
    empty = x_train[:0]
    for m, member in enumerate(ensemble.members):
        train_model(member, x_train, y_train, empty, y_train[:0],
                    replace(config, epochs=epochs, seed=config.seed + 1000 * round_number + m),
                    "regression", x_unlabelled, lower, upper)
