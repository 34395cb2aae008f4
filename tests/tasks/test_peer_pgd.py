"""Cross-check against a peer implementation: our PGD and torchattacks' PGD at the same ε, step size and steps
must give robust accuracies within 2 percentage points on a trained digits classifier.

torchattacks declares torchvision as a dependency but its PGD does not use it; install it with
``pip install --no-deps torchattacks==3.5.1`` (torchvision does not exist for this torch build).
"""

from __future__ import annotations

import pytest
import torch

torchattacks = pytest.importorskip(
    "torchattacks",
    reason="peer check needs torchattacks: pip install --no-deps torchattacks==3.5.1 (its torchvision dependency "
    "is not installable beside this torch build and is not needed by PGD)",
)

from tasks.attacks.pgd import PGD  # noqa: E402
from tasks.classifiers import build_architecture, load_digits_data  # noqa: E402
from tasks.robustness import correct_predictions, run_attack  # noqa: E402
from tasks.training import TrainingConfig, train_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def digits_classifier():
    data = load_digits_data(test_size=450, val_size=100)
    model = build_architecture("mlp", data, seed=0)
    train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainingConfig(epochs=15, seed=0),
                task="classification")
    model.eval()
    return data, model


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_our_pgd_agrees_with_torchattacks(digits_classifier, eps):
    data, model = digits_classifier
    x, y = data.x_test, data.y_test
    steps, alpha = 10, eps / 4
    ours = PGD(model, eps, steps=steps, alpha=alpha, random_start=True, generator=torch.Generator().manual_seed(0))
    ours_accuracy = correct_predictions(model, run_attack(ours, x, y, 500), y).mean()
    torch.manual_seed(0)
    peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    peer_accuracy = correct_predictions(model, peer(x, y), y).mean()
    assert abs(ours_accuracy - peer_accuracy) <= 0.02, (ours_accuracy, peer_accuracy)
    assert peer_accuracy < correct_predictions(model, x, y).mean()  # the peer really attacked
