"""Surrogate networks: a plain MLP on the flattened relaxed design, predicting the oracle score."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Surrogate(nn.Module):
    """MLP regressor ``x ↦ score`` in the oracle's own units.

    The network learns standardised targets; ``target_mean`` and ``target_std`` (buffers, saved with the model)
    map its output back, so attacks, search and users all see scores in oracle units.

    Args:
        input_shape: shape of one encoded design.
        hidden: widths of the hidden layers.
        dropout: dropout after each hidden layer (0 disables it).
    """

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (512, 256), dropout: float = 0.0) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_target_scale(self, y: torch.Tensor) -> None:
        self.target_mean.fill_(float(y.mean()))
        self.target_std.fill_(float(y.std().clamp_min(1e-8)) if len(y) > 1 else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) * self.target_std + self.target_mean
