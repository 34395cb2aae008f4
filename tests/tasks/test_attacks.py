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


# -- APGD (Croce & Hein 2020) -----------------------------------------------------------------------------------------
def test_apgd_checkpoints_follow_the_paper():
    from tasks.attacks.apgd import checkpoints

    # p = 0, 0.22, 0.41, 0.57, 0.69, 0.79, 0.85, 0.91, 0.97 (the paper's sequence) → ⌈p·100⌉
    assert checkpoints(100) == [22, 41, 58, 70, 80, 87, 93, 99]


def test_apgd_reaches_the_exact_worst_case_error_of_a_linear_model():
    from tasks.attacks.apgd import APGD

    torch.manual_seed(0)
    model = nn.Linear(6, 1)
    x = torch.rand(32, 6)
    with torch.no_grad():
        y = model(x).squeeze(-1) + 0.3 * torch.randn(32)
    eps = 0.1
    # For f(x) = w·x + b the largest |f(x′) − y| over the ball ∩ box is at a corner: push each input along ±sign(w).
    with torch.no_grad():
        up = model(torch.clamp(x + eps * model.weight.sign(), 0, 1)).squeeze(-1)
        down = model(torch.clamp(x - eps * model.weight.sign(), 0, 1)).squeeze(-1)
    exact = torch.maximum((up - y).abs(), (down - y).abs())
    x_apgd = APGD(model, eps, steps=100, restarts=2, loss=squared_error_loss,
                  generator=torch.Generator().manual_seed(0))(x, y)
    x_pgd = PGD(model, eps, steps=20, loss=squared_error_loss, generator=torch.Generator().manual_seed(0))(x, y)
    with torch.no_grad():
        err_apgd = (model(x_apgd).squeeze(-1) - y).abs()
        err_pgd = (model(x_pgd).squeeze(-1) - y).abs()
    assert (x_apgd - x).abs().max() <= eps + 1e-6 and x_apgd.min() >= 0 and x_apgd.max() <= 1
    assert torch.allclose(err_apgd, exact, atol=1e-4)
    assert bool((err_apgd >= err_pgd - 1e-5).all())


def test_apgd_finds_at_least_pgds_worst_case_error_on_a_fixed_nonlinear_surrogate():
    from tasks.attacks.apgd import APGD

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    x = torch.rand(128, 8)
    with torch.no_grad():
        y = model(x).squeeze(-1)
    for eps in (0.05, 0.2):
        x_pgd = PGD(model, eps, steps=20, restarts=1, loss=squared_error_loss,
                    generator=torch.Generator().manual_seed(0))(x, y)
        x_apgd = APGD(model, eps, steps=100, restarts=2, loss=squared_error_loss,
                      generator=torch.Generator().manual_seed(0))(x, y)
        with torch.no_grad():
            err_pgd = (model(x_pgd).squeeze(-1) - y).pow(2)
            err_apgd = (model(x_apgd).squeeze(-1) - y).pow(2)
        assert (x_apgd - x).abs().max() <= eps + 1e-6
        assert float(err_apgd.mean()) >= float(err_pgd.mean())
        assert float((err_apgd < 0.99 * err_pgd - 1e-7).float().mean()) <= 0.02  # per example, too


def test_apgd_classification_is_not_weaker_than_pgd():
    from tasks.attacks.apgd import APGD

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.rand(64, 8), torch.randint(0, 3, (64,))
    pgd = PGD(model, 0.2, steps=20, generator=torch.Generator().manual_seed(0))(x, y)
    apgd = APGD(model, 0.2, steps=50, generator=torch.Generator().manual_seed(0))(x, y)
    ce = nn.functional.cross_entropy
    assert ce(model(apgd), y, reduction="sum") >= ce(model(pgd), y, reduction="sum") - 1e-4
