"""Robustness cores: sweeps behave as the theory says, and every sanity check fails when it should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tasks import robustness as rb
from tasks.attacks.base import cross_entropy_loss
from tasks.classifiers import build_architecture, load_digits_data, mlp
from tasks.training import TrainingConfig, train_model


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def trained():
    data = load_digits_data(test_size=300, val_size=100)
    model = build_architecture("mlp", data, seed=0)
    train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainingConfig(epochs=15, seed=0),
                task="classification")
    return data, model


@pytest.fixture(scope="module")
def sweep(trained):
    data, model = trained
    settings = rb.EvaluationSettings(eps=(0.05, 0.1, 0.2, 0.3), pgd_steps=10)
    return settings, rb.classification_sweep(model, data.x_test, data.y_test, rb.white_box_attacks(settings),
                                             settings.eps)


class RandomForward(nn.Module):
    """A 'model' that ignores its input: its accuracy is chance and no attack can do anything."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), 10)


class NoisyForward(nn.Module):
    """Differentiable but randomised: the kind of defense that makes attack numbers noise."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 5 * torch.randn(len(x), 10)


class QuantisedForward(nn.Module):
    """Rounds its input first: gradients are exactly zero everywhere (shattered gradients)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def test_trained_model_learns_digits(sweep):
    _, result = sweep
    assert result.clean_accuracy > 0.9


def test_accuracy_never_rises_with_eps(sweep):
    settings, result = sweep
    for attack, curve in result.robust_accuracy().items():
        values = [result.clean_accuracy, *(curve[e] for e in settings.eps)]
        assert all(b <= a + 0.01 for a, b in zip(values, values[1:])), (attack, values)
    assert rb.check_monotone(result.robust_accuracy(), result.clean_accuracy, 0.02).passed


def test_pgd_is_at_least_as_strong_as_fgsm_and_noise(sweep):
    settings, result = sweep
    curves = result.robust_accuracy()
    for e in settings.eps:
        assert curves["pgd"][e] <= curves["fgsm"][e] + 0.01
        assert curves["pgd"][e] < curves["random_noise"][e]
    assert curves["pgd"][0.3] < 0.1  # an undefended digits MLP has almost nothing left at ε = 0.3


def test_worst_case_is_below_every_attack(sweep):
    settings, result = sweep
    worst = result.worst_case_accuracy()
    for e in settings.eps:
        assert worst[e] <= min(c[e] for c in result.robust_accuracy().values()) + 1e-12
    # per-example: robust under the worst case means robust under each attack
    for e, ok in result.worst_case_correct().items():
        for per_eps in result.correct.values():
            assert not np.any(ok & ~per_eps[e])


def test_healthy_model_passes_every_check(trained, sweep):
    data, model = trained
    settings, result = sweep
    assert rb.check_deterministic(model, data.x_test).passed
    assert rb.check_gradients(model, data.x_test, data.y_test, cross_entropy_loss).passed
    assert rb.check_clean_above_chance(result.clean_accuracy, 10, 0.05).passed


def test_random_forward_is_flagged(trained):
    data, _ = trained
    model = RandomForward()
    x, y = data.x_test[:100], data.y_test[:100]
    assert not rb.check_deterministic(model, x).passed
    gradients = rb.check_gradients(model, x, y, cross_entropy_loss)
    assert not gradients.passed and "not differentiable" in gradients.detail
    clean = float(rb.correct_predictions(model, x, y).mean())
    assert not rb.check_clean_above_chance(clean, 10, 0.05).passed


def test_randomised_forward_is_flagged(trained):
    data, model = trained
    check = rb.check_deterministic(NoisyForward(model), data.x_test[:64])
    assert not check.passed and check.numbers["max_gap"] > 1


def test_zero_gradients_are_flagged(trained):
    data, model = trained
    check = rb.check_gradients(QuantisedForward(model), data.x_test, data.y_test, cross_entropy_loss)
    assert not check.passed
    assert check.numbers["zero_fraction"] == 1.0


def test_nan_gradients_are_flagged(trained):
    data, model = trained

    class SqrtForward(nn.Module):
        def forward(self, x):
            return model(torch.sqrt(x - 0.5))  # NaN below 0.5

    check = rb.check_gradients(SqrtForward(), data.x_test[:50], data.y_test[:50], cross_entropy_loss)
    assert not check.passed


def test_check_monotone_flags_a_rise():
    check = rb.check_monotone({"pgd": {0.1: 0.5, 0.2: 0.6}}, clean=0.9, tolerance=0.02)
    assert not check.passed and "rises" in check.detail


def test_check_stronger_flags_pgd_weaker_than_fgsm():
    curves = {"pgd": {0.1: 0.5}, "fgsm": {0.1: 0.4}}
    check = rb.check_stronger(curves, "pgd", "fgsm", 0.02, "pgd_not_weaker_than_fgsm", "broken")
    assert not check.passed and check.numbers["gap.eps_0.1"] == pytest.approx(0.1)


def test_check_converged_flags_an_unconverged_attack():
    check = rb.check_converged({0.1: 0.6}, more_steps={0.1: 0.5}, more_restarts={0.1: 0.6}, tolerance=0.02)
    assert not check.passed and "not converged" in check.detail
    assert rb.check_converged({0.1: 0.6}, {0.1: 0.595}, {0.1: 0.6}, 0.02).passed


def test_check_transfer_flags_gradient_masking():
    curves = {"fgsm": {0.1: 0.7}, "pgd": {0.1: 0.6}, "transfer_ensemble": {0.1: 0.3}}
    check = rb.check_transfer_weaker(curves, ["transfer_ensemble"], 0.02)
    assert not check.passed and "gradient masking" in check.detail


def test_check_large_eps_flags_an_attack_that_cannot_reach_chance():
    assert not rb.check_large_eps_chance(0.5, 1.0, 10, 0.05).passed
    assert rb.check_large_eps_chance(0.0, 1.0, 10, 0.05).passed


def test_quantised_model_fails_the_attack_checks(trained):
    """Shattered gradients: PGD finds nothing, so PGD is no better than noise and cannot reach chance."""
    data, model = trained
    broken = QuantisedForward(model)
    settings = rb.EvaluationSettings(eps=(0.1, 0.3), pgd_steps=5)
    x, y = data.x_test[:150], data.y_test[:150]
    result = rb.classification_sweep(broken, x, y, rb.white_box_attacks(settings), settings.eps)
    curves = result.robust_accuracy()
    beats_noise = rb.check_stronger(curves, "pgd", "random_noise", 0.02, "pgd_stronger_than_random_noise", "masked")
    large = rb.classification_sweep(broken, x, y, {"pgd": rb.white_box_attacks(settings)["pgd"]}, [1.0])
    chance = rb.check_large_eps_chance(large.robust_accuracy()["pgd"][1.0], 1.0, 10, 0.05)
    assert not (beats_noise.passed and chance.passed)


@pytest.mark.parametrize("eps", [[0.0], [-0.1], [1.5], [float("nan")], []])
def test_eps_out_of_range_is_refused(eps):
    with pytest.raises(ValueError):
        rb.validate_eps(eps)


def test_eps_keys_are_the_values_as_strings():
    assert rb.eps_key(0.1) == "0.1" and rb.eps_key(0.3) == "0.3" and rb.eps_key(1) == "1.0"


@pytest.mark.parametrize("k", [1, 5, 25, 64])
def test_gaas_directions_are_orthonormal_and_gradient_aligned(k):
    g = torch.randn(64, generator=torch.Generator().manual_seed(k))
    r = rb.gaas_directions(g, k)
    assert torch.allclose(r @ r.T, torch.eye(k, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(r @ (g.double() / g.double().norm()), torch.full((k,), 1 / math.sqrt(k), dtype=torch.float64),
                          atol=1e-10)


def test_gaas_counts_all_directions_of_a_linear_model_when_eps_is_large():
    """Two classes, logit gap w·x: with ε·‖w‖/√k above the margin, all k directions are adversarial."""
    torch.manual_seed(0)
    w = torch.randn(16)
    model = nn.Linear(16, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.stack([w / 2, -w / 2]))
    x = (0.01 * w / w.norm()).reshape(1, 16)  # class 0 with a tiny margin
    y = torch.tensor([0])
    counts = rb.gaas_dimension(model, x, y, eps_l2=10.0, k_values=[1, 4, 16])
    assert counts[0] == 16


def test_logits_of_a_linear_model_are_exactly_linear_along_fgsm():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.rand(5, 1, 8, 8), torch.arange(5)
    assert rb.logits_along_fgsm(model, x, y, t_max=0.5).linearity_r2() == pytest.approx(1.0, abs=1e-6)


def test_cross_sections_shape_and_centre(trained):
    data, model = trained
    correct = torch.as_tensor(rb.correct_predictions(model, data.x_test, data.y_test))
    x, y = data.x_test[correct][:4], data.y_test[correct][:4]
    sections = rb.cross_sections(model, x, y, eps=0.3, resolution=11)
    assert sections.labels.shape == (4, 11, 11)
    assert (sections.labels[:, 5, 5] == y.numpy()).all()  # the clean input sits in the centre
    # the seed's observation: the adversarial direction is far more damaging than a random one
    assert sections.misclassified_fraction("fgsm") > sections.misclassified_fraction("random")


def test_regression_sweep_matches_the_linear_closed_form():
    """For f(x) = w·x inside the box, the worst L∞ change is exactly ε‖w‖₁, and FGSM/PGD attain it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 1), nn.Flatten(0))
    with torch.no_grad():
        model[1].bias.zero_()
    w = model[1].weight.detach().reshape(-1)
    x = torch.full((8, 20), 0.5)
    y = model(x).detach() + 0.25
    settings = rb.EvaluationSettings(eps=(0.1, 0.2), pgd_steps=5)
    result = rb.regression_sweep(model, x, y, lambda loss: rb.white_box_attacks(settings, loss), settings.eps)
    for e in settings.eps:
        bound = e * float(w.abs().sum())
        assert result.mean_prediction_change()["pgd"][e] == pytest.approx(bound, rel=1e-4)
        assert result.mean_prediction_change()["fgsm"][e] == pytest.approx(bound, rel=1e-4)
        assert result.mean_prediction_change()["random_noise"][e] <= bound + 1e-6
        assert result.worst_case_adversarial_error()[e] == pytest.approx(0.25 + bound, rel=1e-4)
    assert float(result.clean_error.mean()) == pytest.approx(0.25, rel=1e-5)


def test_mlp_standardises_inside_the_model():
    model = mlp((1, 8, 8), 10, mean=0.3, std=0.2)
    assert float(model[0](torch.full((1,), 0.3))) == pytest.approx(0.0)


def test_the_worst_case_probe_reaches_the_exact_worst_error_of_a_linear_model():
    # f(x) = w·x: inside the box the largest |error| in an L∞ ball of ε is |r| + ε‖w‖₁ (the sign of r decides the
    # corner), so APGD's MAE must come to that.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 1, bias=False), nn.Flatten(0))
    x = 0.3 + 0.4 * torch.rand(40, 6)
    with torch.no_grad():  # residuals larger than ε‖w‖₁, so that the random start cannot flip their sign
        y = model(x) + torch.where(torch.rand(40) < 0.5, -1.0, 1.0) * (1 + torch.rand(40))
    probe = rb.worst_case_error(model, x, y, eps=0.1, steps=50, restarts=1)
    with torch.no_grad():
        residual = (model(x) - y).abs()
        exact = float((residual + 0.1 * model[0].weight.abs().sum()).mean())
    assert probe["clean_mae"] == pytest.approx(float(residual.mean()), rel=1e-6)
    assert probe["apgd_mae"] == pytest.approx(exact, rel=1e-4)
    assert probe["apgd_eps"] == 0.1
