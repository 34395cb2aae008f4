"""Robustness evaluation cores: ε sweeps, per-example worst case, sanity checks and the seed's experiments.

Pure torch/numpy (no Prefect, no MLflow): ``flows/robustness_evaluation.py`` composes these. The protocol follows
Carlini et al., "On Evaluating Adversarial Robustness" (2019, arXiv:1902.06705) and Croce & Hein's AutoAttack /
RobustBench (arXiv:2003.01690, 2010.09670): several attacks per ε, the per-example worst case over all of them
(an example counts as robust only if *every* attack fails on it), and automatic checks that catch the usual ways an
evaluation is silently optimistic — unconverged attacks, gradient masking, random or non-differentiable models.

Classification robust accuracy counts an example only if it is classified correctly clean *and* under attack
(as AutoAttack does), so it can never exceed clean accuracy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tasks.attacks.apgd import APGD
from tasks.attacks.autoattack import AutoAttack
from tasks.attacks.base import Attack, PerExampleLoss, cross_entropy_loss, prediction_loss, squared_error_loss
from tasks.attacks.fgsm import FGSM
from tasks.attacks.pgd import PGD
from tasks.attacks.random_noise import RandomNoise

#: ``factory(model, eps) -> attack``; each call builds a fresh attack with a fresh, seeded generator.
AttackFactory = Callable[[nn.Module, float], Attack]

WHITE_BOX = ("fgsm", "pgd")


def eps_key(eps: float) -> str:
    """ε as the JSON key the CLI reports (``0.1`` → ``"0.1"``)."""
    return repr(float(eps))


def validate_eps(eps: Sequence[float], lower: float = 0.0, upper: float = 1.0) -> tuple[float, ...]:
    """Sorted unique ε values; each must be finite, positive and no larger than the input box's width."""
    values = [float(e) for e in eps]
    if not values:
        raise ValueError("no ε values given")
    width = float(upper) - float(lower)
    bad = [e for e in values if not (math.isfinite(e) and 0 < e <= width)]
    if bad:
        raise ValueError(f"ε out of range: {bad}; inputs live in [{lower}, {upper}] so every ε must be in (0, {width}]")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class EvaluationSettings:
    """How hard the attacks try and how strict the checks are.

    Args:
        eps: the L∞ radii of the sweep (input units; inputs live in ``[lower, upper]``).
        pgd_steps, pgd_restarts: PGD iterations and random restarts; step size ``pgd_step_factor·ε/steps``.
        transfer_steps: PGD iterations on the substitutes.
        large_eps: the ε at which an untargeted attack must reach chance accuracy (the whole box by default).
        tolerance: absolute accuracy slack of every classification check (and relative slack for regression).
        chance_margin: how far above chance the large-ε accuracy (and below it, clean accuracy) may sit.
        batch_size: examples per attack batch.
        seed: seeds every random start, noise draw and direction.
        autoattack: run AutoAttack (classifiers) beside PGD; autoattack_steps: iterations of APGD-CE, APGD-T and
            FAB-T (100 in the standard version); square_queries: Square's query budget (5 000 in the standard).
        apgd_steps, apgd_restarts: the regression APGD probe of a surrogate (Croce & Hein: 100 iterations).
    """

    eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    pgd_steps: int = 20
    pgd_restarts: int = 1
    pgd_step_factor: float = 2.5
    transfer_steps: int = 20
    large_eps: float = 1.0
    tolerance: float = 0.02
    chance_margin: float = 0.05
    batch_size: int = 500
    seed: int = 0
    lower: float = 0.0
    upper: float = 1.0
    autoattack: bool = True
    autoattack_steps: int = 100
    square_queries: int = 5000
    apgd_steps: int = 100
    apgd_restarts: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", validate_eps(self.eps, self.lower, self.upper))
        validate_eps([self.large_eps], self.lower, self.upper)
        if self.pgd_steps < 1 or self.pgd_restarts < 1 or self.transfer_steps < 1:
            raise ValueError("PGD steps and restarts must be ≥ 1")
        if min(self.autoattack_steps, self.square_queries, self.apgd_steps, self.apgd_restarts) < 1:
            raise ValueError("AutoAttack steps, Square queries, APGD steps and restarts must be ≥ 1")


def white_box_attacks(settings: EvaluationSettings, loss: PerExampleLoss = cross_entropy_loss,
                      steps_multiplier: int = 1, restarts_multiplier: int = 1) -> dict[str, AttackFactory]:
    """FGSM, PGD-L∞ (random start, restarts) and the random-sign baseline, as factories."""
    steps = settings.pgd_steps * steps_multiplier
    restarts = settings.pgd_restarts * restarts_multiplier
    lower, upper, seed = settings.lower, settings.upper, settings.seed

    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return {
        "fgsm": lambda model, eps: FGSM(model, eps, loss, lower, upper),
        "pgd": lambda model, eps: PGD(model, eps, steps, settings.pgd_step_factor * eps / steps, True, restarts,
                                      loss, lower, upper, generator()),
        "random_noise": lambda model, eps: RandomNoise(model, eps, loss, lower, upper, generator()),
    }


def autoattack_factory(settings: EvaluationSettings, n_classes: int) -> AttackFactory:
    """AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square; sequential, as the reference code runs it)
    with the settings' iterations and Square budget."""
    return lambda model, eps: AutoAttack(model, eps, n_classes, settings.autoattack_steps, settings.square_queries,
                                         seed=settings.seed, lower=settings.lower, upper=settings.upper)


def apgd_factory(settings: EvaluationSettings, loss: PerExampleLoss = cross_entropy_loss) -> AttackFactory:
    """APGD-L∞ (Croce & Hein 2020) on any per-example loss: the regression sweep's worst-case probe."""
    return lambda model, eps: APGD(model, eps, settings.apgd_steps, settings.apgd_restarts, loss, settings.lower,
                                   settings.upper, torch.Generator().manual_seed(settings.seed))


def run_attack(attack: Attack, x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """``attack`` applied batch by batch (examples are independent, so batching changes nothing but memory)."""
    parts = [attack(x[i : i + batch_size], None if y is None else y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(parts)


def worst_case_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100,
                     restarts: int = 2, lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0,
                     batch_size: int = 512, seed: int = 0) -> dict[str, float]:
    """A surrogate's worst-case probe, as the campaign logs it per defense: the mean absolute prediction error on
    ``(x, y)`` clean and at the ε-perturbation (L∞, in the input box) that APGD on the squared error finds
    (Croce & Hein 2020; 100 iterations and restarts as in their evaluation)."""
    y = y.to(torch.float32)
    attack = APGD(model, eps, steps, restarts, squared_error_loss, lower, upper,
                  generator=torch.Generator().manual_seed(seed))
    x_adv = run_attack(attack, x, y, batch_size)
    clean, adversarial = _outputs(model, x, batch_size), _outputs(model, x_adv, batch_size)
    return {"clean_mae": float((clean - y).abs().mean()), "apgd_mae": float((adversarial - y).abs().mean()),
            "apgd_eps": float(eps)}


def _outputs(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def correct_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    return (_outputs(model, x, batch_size).argmax(dim=1) == y).numpy()


# -- sweeps ---------------------------------------------------------------------------------------------------------
@dataclass
class ClassificationSweep:
    """Per-example outcomes: ``correct[attack][eps]`` is True where the example is right clean *and* attacked."""

    eps: tuple[float, ...]
    clean_correct: np.ndarray
    correct: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.mean())

    def robust_accuracy(self) -> dict[str, dict[float, float]]:
        return {a: {e: float(c.mean()) for e, c in per_eps.items()} for a, per_eps in self.correct.items()}

    def worst_case_correct(self, attacks: Sequence[str] | None = None) -> dict[float, np.ndarray]:
        """Robust only if every attack fails on the example (per-example worst case, as AutoAttack reports)."""
        names = list(self.correct) if attacks is None else list(attacks)
        result = {}
        for eps in self.eps:
            ok = self.clean_correct.copy()
            for name in names:
                if eps in self.correct[name]:
                    ok &= self.correct[name][eps]
            result[eps] = ok
        return result

    def worst_case_accuracy(self, attacks: Sequence[str] | None = None) -> dict[float, float]:
        return {e: float(c.mean()) for e, c in self.worst_case_correct(attacks).items()}


def classification_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, AttackFactory],
                         eps: Sequence[float], batch_size: int = 500) -> ClassificationSweep:
    """Every attack at every ε on every example."""
    sweep = ClassificationSweep(tuple(eps), correct_predictions(model, x, y, batch_size))
    for name, factory in attacks.items():
        sweep.correct[name] = {}
        for e in eps:
            x_adv = run_attack(factory(model, e), x, y, batch_size)
            sweep.correct[name][e] = sweep.clean_correct & correct_predictions(model, x_adv, y, batch_size)
    return sweep


def _per_example_abs(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """L∞ distance between outputs, per example (a plain absolute difference for scalar surrogates)."""
    return (a.reshape(len(a), -1) - b.reshape(len(b), -1)).abs().amax(dim=1).numpy()


def negative_prediction_loss(prediction: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Lower the model's own prediction: the downward half of the regression attack."""
    return -prediction_loss(prediction, y)


#: ``builder(loss) -> {name: factory}``: the same attacks for any loss (the regression sweep needs two).
AttackBuilder = Callable[[PerExampleLoss], Mapping[str, AttackFactory]]


@dataclass
class RegressionSweep:
    """Per-example ``|f(x')−y|`` (adversarial error) and ``|f(x')−f(x)|`` (prediction change) per attack and ε."""

    eps: tuple[float, ...]
    clean_error: np.ndarray
    adversarial_error: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    prediction_change: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)

    @staticmethod
    def _means(values: dict[str, dict[float, np.ndarray]]) -> dict[str, dict[float, float]]:
        return {a: {e: float(v.mean()) for e, v in per_eps.items()} for a, per_eps in values.items()}

    def mean_adversarial_error(self) -> dict[str, dict[float, float]]:
        return self._means(self.adversarial_error)

    def mean_prediction_change(self) -> dict[str, dict[float, float]]:
        return self._means(self.prediction_change)

    def worst_case_adversarial_error(self) -> dict[float, float]:
        """Mean over x of the worst attack (δ = 0 is in every ball, so never below the clean error)."""
        return {e: float(np.max([self.clean_error] + [v[e] for v in self.adversarial_error.values()], axis=0).mean())
                for e in self.eps}

    def worst_case_prediction_change(self) -> dict[float, float]:
        return {e: float(np.max([v[e] for v in self.prediction_change.values()], axis=0).mean()) for e in self.eps}


def regression_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: AttackBuilder,
                     eps: Sequence[float], batch_size: int = 500) -> RegressionSweep:
    """Each attack twice, once raising and once lowering the prediction: for a scalar output the largest
    ``|f(x')−f(x)|`` and the largest ``|f(x')−y|`` over the ball are both attained at the ball's highest or lowest
    prediction, so these two searches serve both numbers. (Maximising ``(f(x')−f(x))²`` directly would not: its
    gradient vanishes at ``x' = x`` and FGSM would not move.)"""
    clean = _outputs(model, x, batch_size)
    y = y.to(clean.dtype).reshape(clean.shape)
    sweep = RegressionSweep(tuple(eps), _per_example_abs(clean, y))
    up, down = attacks(prediction_loss), attacks(negative_prediction_loss)
    for name in up:
        sweep.adversarial_error[name], sweep.prediction_change[name] = {}, {}
        for e in eps:
            raised = _outputs(model, run_attack(up[name](model, e), x, None, batch_size), batch_size)
            lowered = _outputs(model, run_attack(down[name](model, e), x, None, batch_size), batch_size)
            sweep.adversarial_error[name][e] = np.maximum(_per_example_abs(raised, y), _per_example_abs(lowered, y))
            sweep.prediction_change[name][e] = np.maximum(_per_example_abs(raised, clean), _per_example_abs(lowered, clean))
    return sweep


# -- sanity checks --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One pass/fail sanity check with the numbers behind it, so a failure can be read without rerunning."""

    name: str
    passed: bool
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"passed": bool(self.passed), "detail": self.detail}


def _fmt(values: Mapping[float, float]) -> str:
    return ", ".join(f"ε={e:g}: {v:.3f}" for e, v in values.items())


def check_deterministic(model: nn.Module, x: torch.Tensor) -> Check:
    """Two forward passes on the same inputs must agree: a random forward makes every attack number noise
    (and randomised defenses need EOT, which this evaluation does not do)."""
    name = "deterministic_forward"
    try:
        first, second = _outputs(model, x, len(x)), _outputs(model, x, len(x))
    except Exception as exc:  # noqa: BLE001 - a model that cannot run is a failed check, not a crash
        return Check(name, False, f"forward pass failed: {type(exc).__name__}: {exc}")
    if not (torch.isfinite(first).all() and torch.isfinite(second).all()):
        return Check(name, False, "the forward pass returns NaN or infinite outputs", {"finite": 0.0})
    gap = float((first - second).abs().max())
    scale = float(first.abs().max()) + 1.0
    passed = gap <= 1e-5 * scale
    return Check(name, passed, f"max |f(x)−f(x)| over two passes = {gap:.3g}" + ("" if passed else
                 " — the model's forward is random; attack results would be noise"), {"max_gap": gap})


def check_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: PerExampleLoss,
                    zero_fraction_limit: float = 0.01) -> Check:
    """Input gradients of the attack loss must exist, be finite and be non-zero. Computed in float64 so a merely
    confident softmax does not underflow to an exactly-zero gradient; zero or NaN gradients in float64 mean a
    non-differentiable or gradient-masking model, on which gradient attacks report optimistic numbers."""
    name = "input_gradients_finite_nonzero"
    try:
        probe = copy.deepcopy(model).double().eval()
        xx = x.double().clone().requires_grad_(True)
        target = y.double() if y.is_floating_point() else y
    except Exception:  # noqa: BLE001 - some modules cannot be copied or cast; fall back to the model as it is
        probe, xx, target = model.eval(), x.clone().requires_grad_(True), y
    try:
        losses = loss(probe(xx), target)
        (grad,) = torch.autograd.grad(losses.sum(), xx)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        return Check(name, False, f"no input gradient: {first} — the model is not differentiable in its input",
                     {"zero_fraction": 1.0, "nan_fraction": 0.0})
    flat = grad.reshape(len(grad), -1)
    nan_fraction = float((~torch.isfinite(flat)).any(dim=1).float().mean())
    zero_fraction = float((flat.abs().sum(dim=1) == 0).float().mean())
    passed = nan_fraction == 0 and zero_fraction <= zero_fraction_limit
    detail = f"{zero_fraction:.1%} of examples have an all-zero input gradient, {nan_fraction:.1%} a NaN one"
    if not passed:
        detail += " — gradient attacks cannot be trusted on this model (possible gradient masking)"
    return Check(name, passed, detail, {"zero_fraction": zero_fraction, "nan_fraction": nan_fraction})


class NotDifferentiable(ValueError):
    """The model gives no input gradient at all: gradient attacks cannot evaluate it, so no number is reported."""


def require_input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: PerExampleLoss) -> Check:
    """:func:`check_gradients`, raising :class:`NotDifferentiable` when there is no gradient to follow at all."""
    check = check_gradients(model, x, y, loss)
    if check.detail.startswith("no input gradient"):
        raise NotDifferentiable(check.detail)
    return check


def check_clean_above_chance(clean_accuracy: float, num_classes: int, margin: float) -> Check:
    chance = 1.0 / num_classes
    passed = clean_accuracy >= chance + 2 * margin
    return Check("clean_accuracy_above_chance", passed,
                 f"clean accuracy {clean_accuracy:.3f} vs chance {chance:.3f}" + ("" if passed else
                 " — the model has not learned the task; robust accuracy means nothing"),
                 {"clean_accuracy": clean_accuracy, "chance": chance})


def check_monotone(curves: Mapping[str, Mapping[float, float]], clean: float, tolerance: float,
                   decreasing: bool = True, relative: bool = False) -> Check:
    """Accuracy may never rise with ε (error may never fall): a larger ball contains the smaller one."""
    name = "accuracy_monotone_in_eps" if decreasing else "error_monotone_in_eps"
    violations, worst = [], 0.0
    for attack, per_eps in curves.items():
        previous_eps, previous = 0.0, clean
        for e in sorted(per_eps):
            value = per_eps[e]
            rise = (value - previous) if decreasing else (previous - value)
            slack = tolerance * (abs(previous) if relative else 1.0)
            worst = max(worst, rise)
            if rise > slack:
                violations.append(f"{attack}: {previous:.3f} at ε={previous_eps:g} → {value:.3f} at ε={e:g}")
            previous_eps, previous = e, value
    passed = not violations
    what = "accuracy rises" if decreasing else "error falls"
    detail = f"largest step against ε: {worst:+.4f} (tolerance {tolerance:g}{' relative' if relative else ''})"
    if violations:
        detail += f"; {what} with ε — {'; '.join(violations[:4])}: attack too weak or randomised model"
    return Check(name, passed, detail, {"worst_step": worst})


def check_stronger(curves: Mapping[str, Mapping[float, float]], strong: str, weak: str, tolerance: float,
                   name: str, failure: str, higher_is_stronger: bool = False, relative: bool = False) -> Check:
    """``strong`` must do at least as well as ``weak`` at every ε (within ``tolerance``)."""
    gaps = {}
    for e in curves[strong]:
        if e in curves.get(weak, {}):
            s, w = curves[strong][e], curves[weak][e]
            gaps[e] = (w - s) if higher_is_stronger else (s - w)  # > 0: strong attack did worse
    slack = {e: tolerance * (abs(curves[weak][e]) if relative else 1.0) for e in gaps}
    bad = {e: g for e, g in gaps.items() if g > slack[e]}
    passed = not bad
    detail = f"{strong} vs {weak}: " + _fmt({e: curves[strong][e] for e in gaps}) + " vs " + _fmt({e: curves[weak][e] for e in gaps})
    if bad:
        detail += f" — {failure}"
    return Check(name, passed, detail, {f"gap.eps_{e:g}": g for e, g in gaps.items()})


def check_large_eps_chance(accuracy_at_large_eps: float, large_eps: float, num_classes: int, margin: float) -> Check:
    """With ε covering the whole input box any input can become any image; an untargeted attack that cannot
    push accuracy to chance there is not working (Carlini et al. 2019, §5.2)."""
    chance = 1.0 / num_classes
    passed = accuracy_at_large_eps <= chance + margin
    return Check("large_eps_reaches_chance", passed,
                 f"PGD accuracy at ε={large_eps:g} is {accuracy_at_large_eps:.3f} (chance {chance:.3f}, margin {margin:g})"
                 + ("" if passed else " — the attack fails where it cannot: gradient masking or a broken attack"),
                 {"accuracy": accuracy_at_large_eps, "chance": chance})


def check_converged(base: Mapping[float, float], more_steps: Mapping[float, float], more_restarts: Mapping[float, float],
                    tolerance: float, higher_is_stronger: bool = False, relative: bool = False) -> Check:
    """Doubling PGD's steps or restarts must not change the result by more than ``tolerance``."""
    drops = {}
    for e, b in base.items():
        for label, other in (("double_steps", more_steps), ("double_restarts", more_restarts)):
            o = other[e]
            drop = (o - b) if higher_is_stronger else (b - o)
            drops[(label, e)] = drop / max(abs(b), 1e-12) if relative else drop
    worst_key = max(drops, key=drops.get)
    passed = drops[worst_key] <= tolerance
    detail = (f"largest gain from more effort: {drops[worst_key]:+.4f} ({worst_key[0]} at ε={worst_key[1]:g}; "
              f"tolerance {tolerance:g}{' relative' if relative else ''}); base " + _fmt(base))
    if not passed:
        detail += " — attack not converged: raise PGD steps/restarts"
    return Check("pgd_converged", passed, detail, {f"gain.{k[0]}.eps_{k[1]:g}": v for k, v in drops.items()})


def check_autoattack_agrees(curves: Mapping[str, Mapping[float, float]], tolerance: float,
                            pgd: str = "pgd", autoattack: str = "autoattack") -> Check:
    """AutoAttack's robust accuracy may not be more than ``tolerance`` below our PGD's at any ε: if it is, our PGD
    overstated the defense's robustness (Croce & Hein 2020 found this for many published defenses)."""
    gaps = {e: curves[pgd][e] - a for e, a in curves[autoattack].items() if e in curves[pgd]}
    bad = {e: g for e, g in gaps.items() if g > tolerance}
    worst = max(gaps.values()) if gaps else 0.0
    detail = (f"PGD minus AutoAttack accuracy, largest {worst:+.4f} (tolerance {tolerance:g}); PGD "
              + _fmt({e: curves[pgd][e] for e in gaps}) + "; AutoAttack " + _fmt({e: curves[autoattack][e] for e in gaps}))
    if bad:
        detail += (" — our PGD overstated robustness at " + ", ".join(f"ε={e:g} (by {g:.3f})" for e, g in bad.items())
                   + ": report AutoAttack's number")
    return Check("autoattack_not_below_pgd", not bad, detail, {f"gap.eps_{e:g}": g for e, g in gaps.items()})


def check_transfer_weaker(curves: Mapping[str, Mapping[float, float]], transfer: Sequence[str], tolerance: float) -> Check:
    """A black-box transfer attack must never beat the best white-box attack: if it does, the target's own
    gradients are misleading the white-box attacks (Athalye et al. 2018; Carlini et al. 2019)."""
    gaps, bad = {}, []
    for t in transfer:
        for e, acc in curves[t].items():
            white = min(curves[w][e] for w in WHITE_BOX if w in curves)
            gaps[(t, e)] = white - acc  # > 0: transfer did better than white-box
            if white - acc > tolerance:
                bad.append(f"{t} {acc:.3f} < white-box {white:.3f} at ε={e:g}")
    worst = max(gaps.values()) if gaps else 0.0
    passed = not bad
    detail = f"largest advantage of a transfer attack over white-box: {worst:+.4f} (tolerance {tolerance:g})"
    if bad:
        detail += f" — possible gradient masking: {'; '.join(bad[:4])}"
    return Check("transfer_not_stronger_than_white_box", passed, detail,
                 {f"advantage.{k[0]}.eps_{k[1]:g}": v for k, v in gaps.items()})


# -- the seed's experiments -----------------------------------------------------------------------------------------
def fgsm_directions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: PerExampleLoss = cross_entropy_loss) -> torch.Tensor:
    """``sign(∇ₓ loss)`` per example: the FGSM direction (unit L∞ norm)."""
    attack = FGSM(model, 0.0, loss)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        grad, _ = attack.input_gradient(x.detach(), y)
    model.train(was_training)
    return grad.sign()


@dataclass
class CrossSections:
    """Goodfellow et al.'s maps: predicted class on ``x + a·ε·d_fgsm + b·ε·d_random`` for a, b in [−1, 1].
    ``labels[i, row, col]``: rows run along the random direction (top to bottom), columns along FGSM (left to
    right); the inputs are not clipped to the box, as in the lecture's maps, to show the model's own geometry."""

    eps: float
    offsets: np.ndarray
    labels: np.ndarray
    y: np.ndarray

    def misclassified_fraction(self, along: str) -> float:
        """Share of the positive half-axis (a > 0 or b > 0, the other at 0) that is misclassified."""
        centre = len(self.offsets) // 2
        wrong = self.labels != self.y[:, None, None]
        axis = wrong[:, centre, centre + 1 :] if along == "fgsm" else wrong[:, centre + 1 :, centre]
        return float(axis.mean())

    def map_misclassified_fraction(self) -> float:
        return float((self.labels != self.y[:, None, None]).mean())


def cross_sections(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, resolution: int = 31,
                   seed: int = 0) -> CrossSections:
    """Adversarial vs random cross-sections; the random direction is a random sign vector made orthogonal to the
    FGSM direction and rescaled to unit L∞ norm, so both axes span the same L∞ distance."""
    if resolution % 2 == 0:
        resolution += 1  # keep the clean input on the grid
    d_adv = fgsm_directions(model, x, y).reshape(len(x), -1)
    generator = torch.Generator().manual_seed(seed)
    d_rand = (torch.randint(0, 2, d_adv.shape, generator=generator) * 2 - 1).to(d_adv.dtype)
    unit = d_adv / d_adv.norm(dim=1, keepdim=True).clamp_min(1e-12)
    d_rand = d_rand - (d_rand * unit).sum(dim=1, keepdim=True) * unit
    d_rand = d_rand / d_rand.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    offsets = torch.linspace(-1.0, 1.0, resolution)
    b, a = torch.meshgrid(offsets, offsets, indexing="ij")  # rows: random (b), columns: FGSM (a)
    labels = []
    for i in range(len(x)):
        grid = x[i].reshape(1, -1) + eps * (a.reshape(-1, 1) * d_adv[i] + b.reshape(-1, 1) * d_rand[i])
        labels.append(_outputs(model, grid.reshape(-1, *x.shape[1:]), 4096).argmax(dim=1).reshape(resolution, resolution))
    return CrossSections(eps, offsets.numpy(), torch.stack(labels).numpy(), y.numpy())


@dataclass
class LogitsAlongFGSM:
    """Logits on ``x + t·d_fgsm`` for t in [−t_max, t_max]; ``logits[i, step, class]``."""

    t: np.ndarray
    logits: np.ndarray

    def linearity_r2(self) -> float:
        """Pooled R² of a straight-line fit of every logit against t, averaged over examples: near 1 is the
        lecture's "near-linear" picture."""
        scores = []
        design = np.stack([np.ones_like(self.t), self.t], axis=1)
        for per_example in self.logits:
            coef, *_ = np.linalg.lstsq(design, per_example, rcond=None)
            residual = ((per_example - design @ coef) ** 2).sum()
            total = ((per_example - per_example.mean(axis=0)) ** 2).sum()
            scores.append(1.0 - residual / total if total > 0 else 1.0)
        return float(np.mean(scores))


def logits_along_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, t_max: float, points: int = 41) -> LogitsAlongFGSM:
    d = fgsm_directions(model, x, y)
    t = torch.linspace(-t_max, t_max, points)
    logits = [_outputs(model, (x[i].unsqueeze(0) + t.reshape(-1, *([1] * x[i].dim())) * d[i]), 4096) for i in range(len(x))]
    return LogitsAlongFGSM(t.numpy(), torch.stack(logits).numpy())


def gaas_directions(gradient: torch.Tensor, k: int) -> torch.Tensor:
    """Tramèr et al.'s gradient-aligned adversarial subspace: ``k`` orthonormal vectors each with inner product
    ``‖g‖₂/√k`` with ``g`` — the Householder reflection that maps ``(e₁+…+e_k)/√k`` onto ``g/‖g‖`` applied to
    ``e₁…e_k``. Returns shape (k, d)."""
    g = gradient.reshape(-1).double()
    d = g.numel()
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, {d}], got {k}")
    g_hat = g / g.norm().clamp_min(1e-30)
    z = torch.zeros(d, dtype=torch.float64)
    z[:k] = 1.0 / math.sqrt(k)
    v = z - g_hat
    basis = torch.eye(d, dtype=torch.float64)[:k]
    if float(v.norm()) < 1e-12:
        return basis
    return basis - 2.0 * torch.outer(v[:k], v) / v.dot(v)


def gaas_dimension(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_l2: float,
                   k_values: Sequence[int] | None = None) -> np.ndarray:
    """Per example, the largest number of orthogonal directions ``εr₁…εr_k`` (L2 norm ε each) found that are
    *each* misclassified — Tramèr, Papernot, Goodfellow, Boneh & McDaniel, "The Space of Transferable Adversarial
    Examples" (2017, arXiv:1704.03453), who report about 25 on MNIST. Inputs are not clipped (their setting)."""
    flat_dim = int(np.prod(x.shape[1:]))
    if k_values is None:
        k_values = sorted({min(flat_dim, 2**i) for i in range(0, 12)} | {min(flat_dim, k) for k in (25, 50, 100)})
    attack = FGSM(model, 0.0)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        gradient, _ = attack.input_gradient(x.detach(), y)
    model.train(was_training)
    found = np.zeros(len(x), dtype=np.int64)
    for i in range(len(x)):
        if float(gradient[i].abs().sum()) == 0:
            continue
        for k in k_values:
            directions = gaas_directions(gradient[i], k).to(x.dtype)
            candidates = x[i].reshape(1, -1) + eps_l2 * directions
            labels = _outputs(model, candidates.reshape(k, *x.shape[1:]), 4096).argmax(dim=1)
            found[i] = max(found[i], int((labels != y[i]).sum()))
    return found


def transfer_success_rate(sweep: ClassificationSweep, attack: str) -> dict[float, float]:
    """Share of the clean-correct examples that the attack's examples (crafted elsewhere) flip on the target."""
    n_correct = max(int(sweep.clean_correct.sum()), 1)
    return {e: 1.0 - float(c.sum()) / n_correct for e, c in sweep.correct[attack].items()}
