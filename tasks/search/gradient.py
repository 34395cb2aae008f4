"""Gradient design search: FGSM's step, used to improve a design instead of to fool a model.

All seeds move at once as one batched tensor. Each step follows the sign of the surrogate's input gradient
(iterated FGSM, i.e. PGD on ``−f``: Goodfellow et al. 2015; Madry et al. 2018) or an Adam step, then projects
onto the ε-ball around the seed and onto the designer's feasible set. The discrete design every step decodes to
is recorded, so the caller can keep every distinct design met along the way (the trajectory), not only the last.
:func:`random_starts` gives each seed several start points (PGD's random start), so one batched search can
propose more distinct designs per seed than a single trajectory meets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import nn

from tasks.attacks.base import Attack, prediction_loss

METHODS = ("signed", "l2", "adam")


@dataclass(frozen=True)
class SearchConfig:
    """Args:
        method: ``signed`` (iterated FGSM ascent: every coordinate moves by α), ``l2`` (the gradient normalised
            to L2 norm α per design, the step of L2-PGD) or ``adam`` (Adam on the relaxed input).
            On one-hot inputs ``signed`` moves every rival token at the same rate, so all positions whose
            gradient prefers another token flip at the same step: one large jump. ``l2`` keeps the gradient's
            magnitudes, so the most promising positions flip first and the trajectory changes one or a few
            tokens at a time, which is what a similarity constraint needs.
        steps: gradient steps per seed.
        step_size: α of a signed or L2 step, or Adam's learning rate.
        eps: L∞ radius around the seed's encoding (``inf``: the whole feasible box).
    """

    method: Literal["signed", "l2", "adam"] = "l2"
    steps: int = 100
    step_size: float = 0.2
    eps: float = float("inf")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.steps < 1 or not self.step_size > 0 or not self.eps > 0:
            raise ValueError(f"steps, step_size and eps must be positive, got {self}")


@dataclass
class Trajectory:
    """The distinct discrete points each seed visited.

    ``seed_index[i]``, ``step[i]``, ``points[i]`` and ``predicted[i]`` describe record ``i``: a discrete design
    seed ``seed_index[i]`` reached first at ``step[i]``, and the surrogate's prediction on it. Step 0 is the
    seed itself. Points are stored as ``uint8`` when they are integral in [0, 255] (one-hot vertices), which
    keeps 800 seeds × 100 steps of molecules in ~100 MB.
    """

    seed_index: torch.Tensor
    step: torch.Tensor
    points: torch.Tensor
    predicted: torch.Tensor
    final: torch.Tensor = field(repr=False)

    def __len__(self) -> int:
        return len(self.seed_index)


def _compact(x: torch.Tensor) -> torch.Tensor:
    if x.numel() and bool(((x == x.round()) & (x >= 0) & (x <= 255)).all()):
        return x.to(torch.uint8)
    return x.clone()


def gradient_search(
    model: nn.Module,
    x0: torch.Tensor,
    config: SearchConfig,
    project: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    discretize: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    lower: float | torch.Tensor = -float("inf"),
    upper: float | torch.Tensor = float("inf"),
    start: torch.Tensor | None = None,
) -> Trajectory:
    """Ascend ``model`` from every row of ``x0`` at once.

    Args:
        model: the surrogate, ``(n, *shape) -> (n,)``; higher is better. Its mode is restored afterwards.
        x0: encoded seeds: the centres of the ε-balls.
        project: the designer's map onto its feasible set, applied after every step.
        discretize: the designer's map from a relaxed point to the concrete design it decodes to.
        lower, upper: the box of the relaxed representation.
        start: where each row starts (default: ``x0`` itself), e.g. :func:`random_starts`' perturbed copies;
            step 0 records the start's design.
    """
    was_training = model.training
    model.eval()
    ball = Attack(model, config.eps, prediction_loss, lower, upper)
    x0 = x0.detach()
    if start is not None and start.shape != x0.shape:
        raise ValueError(f"start has shape {tuple(start.shape)}, the seeds {tuple(x0.shape)}")
    x = (x0 if start is None else start).detach().clone()
    records_seed, records_step, records_points, records_pred = [], [], [], []
    last: torch.Tensor | None = None

    def record(step: int, x: torch.Tensor) -> None:
        nonlocal last
        point = discretize(x)
        changed = torch.ones(len(x), dtype=torch.bool) if last is None else (
            (point != last).reshape(len(x), -1).any(dim=1).cpu()
        )
        last = point
        if changed.any():
            idx = changed.nonzero().squeeze(1)
            with torch.no_grad():
                predicted = model(point[idx.to(point.device)])
            records_seed.append(idx)
            records_step.append(torch.full((len(idx),), step, dtype=torch.long))
            records_points.append(_compact(point[idx.to(point.device)]).cpu())
            records_pred.append(predicted.detach().cpu())

    optimizer = torch.optim.Adam([x.requires_grad_(True)], lr=config.step_size) if config.method == "adam" else None
    try:
        record(0, x.detach())
        for step in range(1, config.steps + 1):
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                (-model(x).sum()).backward()
                optimizer.step()
                with torch.no_grad():
                    x.copy_(project(ball.project(x, x0)))
                record(step, x.detach())
            else:
                grad, _ = ball.input_gradient(x, None)
                if config.method == "signed":
                    direction = grad.sign()
                else:
                    norms = grad.reshape(len(grad), -1).norm(dim=1).clamp_min(1e-12)
                    direction = grad / norms.reshape(-1, *([1] * (grad.dim() - 1)))
                x = project(ball.project(x + config.step_size * direction, x0)).detach()
                record(step, x)
    finally:
        model.train(was_training)
    return Trajectory(
        seed_index=torch.cat(records_seed),
        step=torch.cat(records_step),
        points=torch.cat(records_points),
        predicted=torch.cat(records_pred),
        final=x.detach().cpu(),
    )


def random_starts(
    x0: torch.Tensor,
    restarts: int,
    radius: float,
    project: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    generator: torch.Generator | None = None,
    lower: float | torch.Tensor = -float("inf"),
    upper: float | torch.Tensor = float("inf"),
    fraction: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``restarts`` start points per seed, for one batched :func:`gradient_search`.

    PGD's random start (Madry et al. 2018, *Towards Deep Learning Models Resistant to Adversarial Attacks*,
    ICLR): a start drawn uniformly from the L∞ ball of ``radius`` around the seed, clipped to the box and
    projected onto the feasible set. The first start of every seed is the seed itself, so a search with restarts
    meets every design the plain search meets. On a one-hot input a radius below 0.5 keeps every position's
    arg-max token, so each start still decodes to its seed and only the path away from it differs.

    ``fraction`` < 1 perturbs only that fraction of the positions (the first axis after the batch; each position
    independently), the rest stay the seed's: on one-hot molecules a radius of 1 on a few positions is a random
    token edit, so the starts are random neighbours of the seed, each with its own gradient path, while the
    similarity constraint can still hold.

    Returns:
        ``(centres, starts, origin)``, each with ``len(x0) · restarts`` rows, seed by seed: ``centres`` are the
        seeds repeated (pass them as ``x0`` to :func:`gradient_search`, the ε-ball stays around the seed),
        ``starts`` the start points (its ``start``), ``origin[i]`` the row of ``x0`` start ``i`` belongs to.
    """
    if restarts < 1 or not radius >= 0 or not 0 <= fraction <= 1:
        raise ValueError(f"restarts must be ≥ 1, radius ≥ 0 and fraction in [0, 1], got restarts={restarts}, "
                         f"radius={radius}, fraction={fraction}")
    x0 = x0.detach()
    origin = torch.arange(len(x0)).repeat_interleave(restarts)
    centres = x0[origin]
    noise = torch.rand(centres.shape, generator=generator, dtype=centres.dtype) * 2 - 1
    if fraction < 1 and centres.dim() > 1:
        chosen = torch.rand(centres.shape[:2], generator=generator) < fraction
        noise = noise * chosen.reshape(*chosen.shape, *([1] * (centres.dim() - 2))).to(noise.dtype)
    noise[::restarts] = 0  # copy 0 of every seed: the seed itself
    lower_t = torch.as_tensor(lower, dtype=centres.dtype)
    upper_t = torch.as_tensor(upper, dtype=centres.dtype)
    starts = project(torch.maximum(torch.minimum(centres + radius * noise.to(centres.device), upper_t), lower_t))
    starts[::restarts] = centres[::restarts]
    return centres, starts, origin
