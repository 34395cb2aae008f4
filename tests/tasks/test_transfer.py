"""Black-box transfer attacks: the target is never differentiated, substitutes mimic it, examples transfer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tasks.attacks.transfer import SubstituteEnsemble, TransferAttack, label_queries, train_substitute
from tasks.classifiers import accuracy, build_architecture, load_digits_data
from tasks.robustness import correct_predictions, run_attack
from tasks.training import TrainingConfig, train_model
from tasks.attacks.random_noise import RandomNoise


pytestmark = pytest.mark.usefixtures("single_torch_thread")


class CountingTarget(nn.Module):
    """Records every forward call and whether its input could carry a gradient back to the attacker."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.gradient_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.gradient_calls += int(x.requires_grad)
        return self.inner(x)


@pytest.fixture(scope="module")
def digits_target():
    torch.manual_seed(0)
    data = load_digits_data(test_size=300, val_size=100)
    target = build_architecture("mlp", data, seed=0)
    train_model(target, data.x_train, data.y_train, data.x_val, data.y_val, TrainingConfig(epochs=15, seed=0),
                task="classification")
    return data, target


def test_ensemble_returns_log_of_averaged_probabilities():
    torch.manual_seed(0)
    members = [nn.Linear(5, 3), nn.Linear(5, 3)]
    x = torch.randn(4, 5)
    out = SubstituteEnsemble(members)(x)
    expected = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-6)


def test_ensemble_rejects_bad_weights():
    with pytest.raises(ValueError):
        SubstituteEnsemble([nn.Linear(2, 2)], weights=[-1.0])
    with pytest.raises(ValueError):
        SubstituteEnsemble([])


def test_transfer_attack_never_differentiates_the_target(digits_target):
    data, target = digits_target
    substitute = build_architecture("mlp_deep", data, seed=1)
    counting = CountingTarget(target)
    x, y = data.x_test[:50], data.y_test[:50]
    x_adv = TransferAttack(counting, 0.1, [substitute], steps=5)(x, y)
    assert counting.calls == 0 and counting.gradient_calls == 0
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_the_target_cannot_be_its_own_substitute(digits_target):
    _, target = digits_target
    with pytest.raises(ValueError, match="white-box"):
        TransferAttack(target, 0.1, [target])


def test_substitute_mimics_target_and_its_examples_transfer(digits_target):
    data, target = digits_target
    queried = CountingTarget(target)
    substitute = build_architecture("cnn", data, seed=3)
    agreement = train_substitute(queried, substitute, data.x_train, epochs=10, seed=3)
    assert queried.gradient_calls == 0  # label queries only
    assert agreement > 0.85
    x, y = data.x_test, data.y_test
    eps = 0.2
    clean = accuracy(target, x, y)
    transferred = correct_predictions(target, run_attack(TransferAttack(target, eps, [substitute], steps=10), x, y, 500), y).mean()
    noise = correct_predictions(target, run_attack(RandomNoise(target, eps, generator=torch.Generator().manual_seed(0)), x, y, 500), y).mean()
    # The seed notes: a substitute's adversarial examples transfer; random noise of the same size barely hurts.
    assert transferred < noise - 0.2
    assert transferred < clean - 0.3


def test_label_queries_are_argmax_labels(digits_target):
    data, target = digits_target
    labels = label_queries(target, data.x_test[:20])
    assert torch.equal(labels, target(data.x_test[:20]).argmax(dim=1))
