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
    def predict_tokens(self, rows: torch.Tensor, vocabulary: int, chunk: int = 8192,
                       precision: torch.dtype = torch.float32) -> torch.Tensor:
        """Exact predictions ``(M, n)`` on one-hot token rows given as indices ``(n, L)``, the hidden layers in
        ``precision`` (see :func:`_chunked`).

        The first layer of a surrogate on a one-hot input is a sum of one weight column per position, so it is
        computed as an embedding-bag sum (L columns gathered) instead of a dense product with L·V inputs: the
        same numbers, ~V times less work, which is what lets a round score hundreds of thousands of edits.
        """
        length = rows.shape[1]
        offsets = (torch.arange(length, device=rows.device) * vocabulary)[None]
        out = []
        for member in self.members:
            first = member.net[1]
            table = first.weight.t().contiguous()                             # (L·V, hidden), rows gathered
            out.append(_chunked(member, len(rows), chunk, lambda s: nn.functional.embedding_bag(
                rows[s] + offsets, table, mode="sum") + first.bias, precision))
        return torch.stack(out)

    @torch.no_grad()
    def predict_edits(self, rows: torch.Tensor, parent: torch.Tensor, kind: torch.Tensor, position: torch.Tensor,
                      token: torch.Tensor, vocabulary: int, chunk: int = 8192,
                      precision: torch.dtype = torch.float32) -> torch.Tensor:
        """Exact predictions ``(M, n)`` on single edits of token rows: child ``c`` is ``rows[parent[c]]`` with
        one edit (:func:`tasks.search.edits.apply_edit`'s kinds), the same numbers as :meth:`predict_tokens` on
        the edited rows up to float rounding.

        An edit changes a few of the first layer's summed columns (a substitution one; an insertion or deletion
        shifts a suffix, whose change is a suffix sum), so the first layer of every child is its parent's, looked
        up per (kind, position, parent), plus at most one weight column: two gathers per child instead of L. The
        parents' table is laid out position-major, so its suffix sums are two (L × L) triangular products.
        """
        from tasks.search.edits import DELETE

        n_rows, length = rows.shape
        offsets = (torch.arange(length, device=rows.device) * vocabulary)[None]
        padded = torch.cat([rows, rows.new_zeros(n_rows, 1)], dim=1)
        # (L, n_rows) weight rows: position j's own token, the one after it, the one before it.
        own, after, before = ((r + offsets).t() for r in (rows, padded[:, 1:], padded[:, :-1].roll(1, dims=1)))
        suffix = torch.ones(length, length, device=rows.device).triu()       # suffix[p, j] = [j ≥ p]
        n_base = 3 * length * n_rows
        # Per child, two rows of one table: its parent's first layer less the edited part, and the new column.
        pair = torch.stack([(kind * length + position) * n_rows + parent,
                            n_base + torch.where(kind == DELETE, length * vocabulary, position * vocabulary + token)],
                           dim=1)
        out = []
        for member in self.members:
            first = member.net[1]
            table = first.weight.t().contiguous()                             # (L·V, hidden): column of (j, t)
            hidden = table.shape[1]
            # The parents' rows, laid out by the kinds' values (SUBSTITUTE 0, INSERT 1, DELETE 2), then the weight
            # columns and a zero row (a deletion adds no column).
            rows_of = table.new_empty(n_base + len(table) + 1, hidden)
            rows_of[n_base:-1] = table
            rows_of[-1] = 0.0
            base = rows_of[:n_base].view(3, length, n_rows * hidden)
            current = nn.functional.embedding(own, table).view(length, -1)    # (L, n_rows · hidden)
            total = (current.view(length, n_rows, hidden).sum(dim=0) + first.bias).view(-1)
            torch.sub(total, current, out=base[0])
            # Inserting at p shifts every j > p to t_{j−1}; deleting p shifts every j ≥ p to t_{j+1}.
            shifted = nn.functional.embedding(before, table).view(length, -1).sub_(current)
            torch.addmm(base[0], suffix.triu(1), shifted, out=base[1])
            shifted = nn.functional.embedding(after, table).view(length, -1).sub_(current)
            torch.addmm(total.expand(length, -1), suffix, shifted, out=base[2])
            del current, shifted
            out.append(_chunked(member, len(parent), chunk,
                                lambda s: nn.functional.embedding_bag(pair[s], rows_of, mode="sum"), precision))
        return torch.stack(out)


class EnsembleMean(nn.Module):
    """An ensemble's mean prediction ``(n,)`` as one model: what the loop ascends at β = 0, and what the
    campaign's worst-case probe attacks."""

    def __init__(self, ensemble: Ensemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x).mean(dim=0)


def _chunked(member: Surrogate, n: int, chunk: int, first_layer, precision: torch.dtype) -> torch.Tensor:
    """A member's predictions in oracle units, ``chunk`` rows at a time from their first layer's output (float32).

    The hidden layers after the first run in ``precision``. ``torch.bfloat16`` runs the matmuls at ~7× float32's
    rate on CPUs with AMX (and on GPUs' tensor cores) and moves half the bytes; the first layer's sums and the output
    layer stay in float32, so predictions differ from float32's by ~1e-3 of their spread, far below any member's
    error (the loop's speed benchmark measures the difference and how many picks it changes).
    """
    layers = _scoring_layers(member.net[2:], precision)
    parts = []
    for start in range(0, n, chunk):
        h = first_layer(slice(start, start + chunk)).to(precision)
        for layer in layers:
            h = layer(h)
        parts.append(h.squeeze(-1))
    if not parts:
        return torch.zeros(0)
    return torch.cat(parts) * member.target_std + member.target_mean


#: Activations that may overwrite their input: a chunk's activations are fresh tensors, and scoring hundreds of
#: thousands of candidates spent more time allocating them than computing them.
_IN_PLACE = {nn.SiLU: lambda h: nn.functional.silu(h, inplace=True), nn.ReLU: torch.relu_}


def _scoring_layers(layers: nn.Sequential, precision: torch.dtype) -> list:
    """``layers`` as callables for scoring: activations in place, hidden linear layers in ``precision``, the last
    linear layer in float32."""
    last = max((i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)), default=-1)
    out = []
    for i, layer in enumerate(layers):
        if type(layer) in _IN_PLACE:
            out.append(_IN_PLACE[type(layer)])
        elif isinstance(layer, nn.Linear) and i == last:
            out.append(lambda h, layer=layer: layer(h.float()))
        elif isinstance(layer, nn.Linear):
            weight, bias = layer.weight.to(precision), None if layer.bias is None else layer.bias.to(precision)
            out.append(lambda h, weight=weight, bias=bias: nn.functional.linear(h, weight, bias))
        else:
            out.append(layer)
    return out


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
        model = Surrogate(input_shape, hidden, seed=config.seed * 7919 + m)
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
