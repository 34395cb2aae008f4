import pytest
import torch
from torch import nn

from tasks.attacks import FGSM, PGD, RandomNoise, VirtualAdversarial, prediction_loss, squared_error_loss


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(6, 1)


def test_fgsm_on_a_linear_model_moves_by_eps_sign_w(linear):
    x = torch.rand(4, 6) * 0.5 + 0.25
    x_adv = FGSM(linear, 0.1, prediction_loss, lower=-5, upper=5)(x)
    assert torch.allclose(x_adv - x, 0.1 * linear.weight.sign().expand_as(x), atol=1e-6)


def test_fgsm_regression_loss_pushes_prediction_away_from_label(linear):
    x = torch.rand(5, 6)
    with torch.no_grad():
        y = linear(x).squeeze(-1) - 1.0  # label below the prediction: the attack must raise the prediction
    x_adv = FGSM(linear, 0.05, squared_error_loss, lower=-5, upper=5)(x, y)
    assert torch.allclose(x_adv - x, 0.05 * linear.weight.sign().expand_as(x), atol=1e-6)


def test_pgd_stays_in_ball_and_box_and_beats_fgsm():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.rand(64, 8), torch.randint(0, 3, (64,))
    eps = 0.2
    fgsm = FGSM(model, eps)(x, y)
    pgd = PGD(model, eps, steps=20, restarts=2, generator=torch.Generator().manual_seed(0))(x, y)
    assert (pgd - x).abs().max() <= eps + 1e-6
    assert pgd.min() >= 0 and pgd.max() <= 1
    ce = nn.functional.cross_entropy
    assert ce(model(pgd), y, reduction="sum") >= ce(model(fgsm), y, reduction="sum") - 1e-4


def test_pgd_restarts_never_lower_the_per_example_loss():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.rand(32, 8), torch.randint(0, 3, (32,))
    one = PGD(model, 0.1, steps=5, restarts=1, generator=torch.Generator().manual_seed(0))(x, y)
    four = PGD(model, 0.1, steps=5, restarts=4, generator=torch.Generator().manual_seed(0))(x, y)
    ce = nn.functional.cross_entropy
    assert (ce(model(four), y, reduction="none") >= ce(model(one), y, reduction="none") - 1e-5).all()


def test_random_noise_has_the_same_linf_norm_as_fgsm():
    model = nn.Linear(10, 2)
    x = torch.full((3, 10), 0.5)
    x_noise = RandomNoise(model, 0.1, generator=torch.Generator().manual_seed(0))(x, torch.zeros(3, dtype=torch.long))
    assert torch.allclose((x_noise - x).abs(), torch.full_like(x, 0.1))


def test_attacks_restore_training_mode_and_reject_negative_eps(linear):
    linear.train()
    FGSM(linear, 0.1, prediction_loss)(torch.rand(2, 6))
    assert linear.training
    with pytest.raises(ValueError, match="eps"):
        FGSM(linear, -1.0)


def test_vat_perturbation_has_norm_eps_and_finds_the_sensitive_direction():
    # f(x) = (w·x)^2 changes fastest along w: the power iteration must find ±w.
    w = torch.tensor([3.0, 0.0, 0.0, 1.0])
    model = lambda x: (x @ w) ** 2  # noqa: E731
    vat = VirtualAdversarial(model, eps=0.5, xi=1e-3, power_iterations=3, generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    r = vat(x) - x
    assert r.norm().item() == pytest.approx(0.5, rel=1e-4)
    cosine = torch.nn.functional.cosine_similarity(r, w.unsqueeze(0)).abs().item()
    assert cosine > 0.99
