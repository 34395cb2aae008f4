import math

import pytest
import torch

from tasks.attacks.vat import VirtualAdversarial
from tasks.surrogate import Surrogate
from tasks.training import Defense, TrainingConfig, TrainingDiverged, train_model


def regression_data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, generator=g)
    y = 2.0 * x[:, 0, 0] - x[:, 1, 2] + 0.5 * x[:, 2].sum(dim=1) + 5.0
    return x, y


@pytest.mark.parametrize("defense", ["none", "fgsm", "pgd", "vat"])
def test_every_defense_learns_a_smooth_regression(defense):
    x, y = regression_data()
    model = Surrogate((3, 4), hidden=(32,))
    model.set_target_scale(y[:320])
    config = TrainingConfig(epochs=20, batch_size=32, lr=3e-3, defense=Defense(name=defense, eps=0.02, pgd_steps=3,
                                                                                 vat_eps=0.1))
    history = train_model(model, x[:320], y[:320], x[320:], y[320:], config, x_unlabelled=torch.rand(200, 3, 4))
    first, last = history.epochs[0], history.epochs[-1]
    assert last.validation_loss < 0.5 * first.validation_loss
    assert last.validation_loss < 0.1  # standardised units: R² above 0.9
    assert not model.training


def test_vat_loss_is_positive_and_decreases_when_minimised():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    vat = VirtualAdversarial(model, eps=0.5, generator=torch.Generator().manual_seed(0))
    probe = torch.rand(256, 3, 4, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = vat.loss(probe)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert min(losses) > 0
    assert losses[-1] < 0.2 * losses[0]


def test_vat_training_makes_the_surrogate_smoother_than_plain_training():
    x, y = regression_data()
    probe = torch.rand(256, 3, 4, generator=torch.Generator().manual_seed(1))
    smoothness = {}
    for name in ("none", "vat"):
        model = Surrogate((3, 4), hidden=(64,))
        model.set_target_scale(y)
        config = TrainingConfig(epochs=15, batch_size=32, lr=3e-3,
                                defense=Defense(name=name, vat_eps=0.5, vat_weight=5.0))
        train_model(model, x, y, x[:0], y[:0], config, x_unlabelled=probe)
        vat = VirtualAdversarial(model, eps=0.5, generator=torch.Generator().manual_seed(0))
        smoothness[name] = float(vat.loss(probe).detach())
    assert 0 < smoothness["vat"] < smoothness["none"]


def test_nan_loss_stops_training_with_a_clear_error():
    x, y = regression_data(64)
    y[3] = math.nan
    model = Surrogate((3, 4), hidden=(8,))
    with pytest.raises(TrainingDiverged, match="NaN"):
        train_model(model, x, y, x[:0], y[:0], TrainingConfig(epochs=2, batch_size=64))


def test_unknown_defense_lists_the_choices():
    with pytest.raises(ValueError, match="none, fgsm, pgd, vat"):
        Defense(name="trades-ish")


def test_classification_fgsm_training_raises_robust_accuracy():
    from tasks.attacks import FGSM

    g = torch.Generator().manual_seed(0)
    x = torch.rand(600, 10, generator=g)
    y = (x[:, :5].sum(dim=1) > x[:, 5:].sum(dim=1)).long()

    def robust_accuracy(model):
        x_adv = FGSM(model, 0.1)(x[500:], y[500:])
        return (model(x_adv).argmax(1) == y[500:]).float().mean().item()

    results = {}
    for name in ("none", "fgsm"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        config = TrainingConfig(epochs=20, batch_size=100, lr=5e-3, defense=Defense(name=name, eps=0.1))
        train_model(model, x[:500], y[:500], x[500:], y[500:], config, task="classification")
        results[name] = robust_accuracy(model)
    assert results["fgsm"] > results["none"]
