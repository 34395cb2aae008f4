"""Training with a defense: none, FGSM or PGD adversarial training, virtual adversarial training, TRADES, or (for
regression surrogates) a conservative objective (COMs).

One trainer for regression surrogates and for the classifiers of the robustness benchmark, so the defenses
evaluated in ``flows/robustness_evaluation.py`` are exactly the ones the design surrogates use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tasks import progress
from tasks.attacks import FGSM, PGD, cross_entropy_loss, squared_error_loss
from tasks.attacks.vat import VirtualAdversarial, softmax_kl, squared_difference
from tasks.defenses import ConservativeObjective, trades_perturbation, trades_robust_term

DEFENSES = ("none", "fgsm", "pgd", "vat", "trades", "coms")
#: Defenses that only make sense for a regression surrogate (they penalise the predicted value itself).
REGRESSION_ONLY_DEFENSES = ("coms",)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the model is unusable."""


@dataclass(frozen=True)
class Defense:
    """How training is made robust.

    Args:
        name: ``none``; ``fgsm`` (Goodfellow et al. 2015: loss ``α·L(x) + (1−α)·L(x_fgsm)``); ``pgd`` (Madry et
            al. 2018: loss on the PGD example only); ``vat`` (Miyato et al. 2018: ``L(x) + λ·LDS`` on labelled
            and unlabelled inputs); ``trades`` (Zhang et al. 2019: ``L(x) + β·D(f(x), f(x′))``, x′ the PGD maximiser
            of D in the ε-ball; KL for classifiers, squared difference for regression); ``coms`` (Trabucco et al.
            2021, regression only: ``MSE + α·(mean f(x_ascent) − mean f(x))``, α adapted against a limit).
        eps: L∞ radius for fgsm/pgd/trades.
        fgsm_mix: α of the FGSM mixed loss (0.5 in the paper).
        pgd_steps: PGD iterations during training (step size 2.5·ε/steps).
        vat_eps: L2 radius of the virtual adversarial perturbation.
        vat_weight: λ, the weight of the LDS term.
        vat_xi, vat_power_iterations: finite-difference step and power iterations of the VAT direction.
        trades_beta: β of TRADES (0 is plain training; the paper uses 6). Its inner PGD takes ``pgd_steps``.
        coms_alpha: COMs' starting Lagrange multiplier α; coms_limit: the over-estimation limit τ on the ascent's
            points, in target standard deviations; coms_alpha_lr: α's dual-ascent rate; coms_steps,
            coms_step_size: the inner L2 gradient ascent from the training designs (in the input box).
    """

    name: Literal["none", "fgsm", "pgd", "vat", "trades", "coms"] = "none"
    eps: float = 0.1
    fgsm_mix: float = 0.5
    pgd_steps: int = 7
    vat_eps: float = 1.0
    vat_weight: float = 1.0
    vat_xi: float = 1e-6
    vat_power_iterations: int = 1
    trades_beta: float = 6.0
    coms_alpha: float = 1.0
    coms_limit: float = 0.5
    coms_alpha_lr: float = 0.01
    coms_steps: int = 5
    coms_step_size: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in DEFENSES:
            raise ValueError(f"unknown defense {self.name!r}; choose one of {', '.join(DEFENSES)}")
        if not (self.eps >= 0 and self.vat_eps >= 0):
            raise ValueError(f"defense eps must be ≥ 0, got eps={self.eps}, vat_eps={self.vat_eps}")
        if not self.trades_beta >= 0:
            raise ValueError(f"trades_beta must be ≥ 0, got {self.trades_beta}")
        if not (self.coms_alpha >= 0 and self.coms_alpha_lr >= 0 and self.coms_steps >= 1 and self.coms_step_size > 0
                and math.isfinite(self.coms_limit)):
            raise ValueError("COMs needs coms_alpha ≥ 0, coms_alpha_lr ≥ 0, coms_steps ≥ 1, coms_step_size > 0 and a "
                             f"finite coms_limit; got {self.coms_alpha}, {self.coms_alpha_lr}, {self.coms_steps}, "
                             f"{self.coms_step_size}, {self.coms_limit}")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    defense: Defense = field(default_factory=Defense)

    def as_params(self) -> dict[str, float | int | str]:
        """Flat parameters for experiment tracking."""
        params = {k: v for k, v in asdict(self).items() if k != "defense"}
        params.update({f"defense.{k}" if k != "name" else "defense": v for k, v in asdict(self.defense).items()})
        return params


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float


@dataclass
class TrainingHistory:
    epochs: list[EpochRecord] = field(default_factory=list)
    #: COMs only: the Lagrange multiplier α and the over-estimation gap (target std units) at each epoch's end.
    coms_alpha: list[float] = field(default_factory=list)
    coms_gap: list[float] = field(default_factory=list)


Task = Literal["regression", "classification"]


def _target_scale(model: nn.Module) -> torch.Tensor:
    return getattr(model, "target_std", torch.tensor(1.0))


def _standardised_squared_difference(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """VAT's regression divergence in target standard deviations, the units of the supervised loss beside it: on
    raw outputs the smoothness term weighed ``target_std²`` times more (~50× for a car's top speed in km/h), which
    flattened the surrogate (car validation R² 0.33 against 0.94 undefended)."""
    scale = _target_scale(model)
    return lambda reference, perturbed: squared_difference(reference / scale, perturbed / scale)


def _loss_of_output(model: nn.Module, out: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y)
    scale = _target_scale(model)
    return F.mse_loss(out / scale, y / scale)


def _supervised_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    return _loss_of_output(model, model(x), y, task)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task, batch_size: int) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        total = sum(
            float(_supervised_loss(model, x[i : i + batch_size], y[i : i + batch_size], task)) * len(x[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        )
    model.train(was_training)
    return total / max(len(x), 1)


def train_model(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: TrainingConfig,
    task: Task = "regression",
    x_unlabelled: torch.Tensor | None = None,
    lower: float | torch.Tensor = 0.0,
    upper: float | torch.Tensor = 1.0,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` in place with ``config.defense`` and return the per-epoch losses.

    Regression losses are on standardised targets (``model.target_std``), so they read the same whatever the
    oracle's units. ``x_unlabelled`` feeds VAT's smoothness term only. ``lower``/``upper`` is the input box the
    adversarial examples stay in. Raises :class:`TrainingDiverged` as soon as a loss is not finite.
    """
    if len(x_train) == 0:
        raise ValueError("the training set is empty")
    defense = config.defense
    if task == "classification" and defense.name in REGRESSION_ONLY_DEFENSES:
        raise ValueError(f"defense {defense.name!r} is for regression surrogates (it penalises the predicted value), "
                         "not for classifiers")
    generator = torch.Generator().manual_seed(config.seed)
    # TRADES draws its random starts from its own stream, so the batch order is the plain run's (β = 0 ≡ none).
    trades_generator = torch.Generator().manual_seed(config.seed + 7919)
    coms = ConservativeObjective(defense.coms_alpha, defense.coms_limit, defense.coms_alpha_lr, defense.coms_steps,
                                 defense.coms_step_size)
    torch.manual_seed(config.seed)
    attack_loss = cross_entropy_loss if task == "classification" else squared_error_loss
    divergence = softmax_kl if task == "classification" else _standardised_squared_difference(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    vat = VirtualAdversarial(
        model, defense.vat_eps, defense.vat_xi, defense.vat_power_iterations, divergence, generator=generator
    )
    vat_pool = x_train if x_unlabelled is None else torch.cat([x_train, x_unlabelled])
    history = TrainingHistory()
    # Transient: the design loop fine-tunes every member each round, and each would otherwise leave a line.
    shown = progress.bar(config.epochs, f"train {defense.name}", unit="epoch", leave=False, every_step=True)

    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total, seen, gaps = 0.0, 0, []
        for start in range(0, len(x_train), config.batch_size):
            idx = order[start : start + config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if defense.name == "fgsm":
                x_adv = FGSM(model, defense.eps, attack_loss, lower, upper)(xb, yb)
                model.train()
                loss = defense.fgsm_mix * _supervised_loss(model, xb, yb, task) + (
                    1 - defense.fgsm_mix
                ) * _supervised_loss(model, x_adv, yb, task)
            elif defense.name == "pgd":
                x_adv = PGD(model, defense.eps, defense.pgd_steps, loss=attack_loss, lower=lower, upper=upper,
                            generator=generator)(xb, yb)
                model.train()
                loss = _supervised_loss(model, x_adv, yb, task)
            elif defense.name == "vat":
                unlabelled = vat_pool[torch.randint(len(vat_pool), (len(xb),), generator=generator)]
                loss = _supervised_loss(model, xb, yb, task) + defense.vat_weight * vat.loss(
                    torch.cat([xb, unlabelled])
                )
            elif defense.name == "trades":
                out = model(xb)
                x_adv = trades_perturbation(model, xb, out.detach(), defense.eps, defense.pgd_steps,
                                            task == "classification", lower, upper, trades_generator)
                model.train()
                robust = trades_robust_term(out, model(x_adv), task == "classification", _target_scale(model))
                loss = _loss_of_output(model, out, yb, task) + defense.trades_beta * robust
            elif defense.name == "coms":
                gap = coms.gap(model, xb, _target_scale(model), lower, upper)
                loss = _supervised_loss(model, xb, yb, task) + coms.alpha * gap
                gaps.append(float(gap.detach()))
                coms.update(gaps[-1])
            else:
                loss = _supervised_loss(model, xb, yb, task)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training loss is {float(loss.detach())} at epoch {epoch} (defense={defense.name}, lr={config.lr}); "
                    "lower the learning rate or check the labels for NaN"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        record = EpochRecord(epoch, total / seen, _evaluate(model, x_val, y_val, task, 1024) if len(x_val) else math.nan)
        history.epochs.append(record)
        if defense.name == "coms":
            history.coms_alpha.append(coms.alpha)
            history.coms_gap.append(sum(gaps) / len(gaps))
        if on_epoch is not None:
            on_epoch(record)
        shown.set_postfix_str(f"validation loss {record.validation_loss:.3g}", refresh=False)
        shown.update()
    shown.close()
    model.eval()
    return history
