"""AutoAttack (torchattacks' APGD-CE, APGD-T, FAB-T, Square) as the evaluation runs it: small n, few queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchattacks", reason="AutoAttack needs torchattacks: pip install --no-deps torchattacks==3.5.1")

from tasks import robustness as rb  # noqa: E402
from tasks.attacks.autoattack import COMPONENTS, AutoAttack  # noqa: E402
from tasks.classifiers import build_architecture, load_digits_data  # noqa: E402
from tasks.training import TrainingConfig, train_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_torch_thread")

FAST = dict(steps=10, square_queries=50)


@pytest.fixture(scope="module")
def classifier():
    data = load_digits_data(test_size=150, val_size=100)
    model = build_architecture("mlp", data, seed=0)
    train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, TrainingConfig(epochs=10, seed=0),
                task="classification")
    model.eval()
    return data.x_test[:80], data.y_test[:80], model


def _accuracy(model, x_adv, y):
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("sequential", [False, True])
def test_autoattack_is_never_above_any_of_its_components(classifier, sequential):
    x, y, model = classifier
    eps = 0.1
    attack = AutoAttack(model, eps, 10, sequential=sequential, **FAST)
    x_adv = attack(x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    together = _accuracy(model, x_adv, y)
    alone = {}
    for name in COMPONENTS:
        single = AutoAttack(model, eps, 10, components=(name,), **FAST)
        alone[name] = _accuracy(model, single(x, y), y)
        assert together <= alone[name], (name, together, alone)
    # The ensemble does better than its weakest member here: it is a real combination, not APGD-CE renamed.
    assert together < max(alone.values())
    # What the attack reports as fooled is what the model says about the returned examples.
    fooled_any = torch.stack(list(attack.fooled.values())).any(dim=0)
    clean_wrong = model(x).argmax(1) != y
    assert _accuracy(model, x_adv, y) == pytest.approx(1 - float((fooled_any | clean_wrong).float().mean()))


def test_autoattack_in_the_sweep_and_the_overstatement_check(classifier):
    x, y, model = classifier
    settings = rb.EvaluationSettings(eps=(0.05, 0.1), pgd_steps=10, autoattack_steps=10, square_queries=50)
    attacks = {**rb.white_box_attacks(settings), "autoattack": rb.autoattack_factory(settings, 10)}
    sweep = rb.classification_sweep(model, x, y, attacks, settings.eps)
    curves = sweep.robust_accuracy()
    for e in settings.eps:
        assert curves["autoattack"][e] <= sweep.clean_accuracy
        assert sweep.worst_case_accuracy()[e] <= curves["autoattack"][e]
    check = rb.check_autoattack_agrees(curves, settings.tolerance)
    assert check.name == "autoattack_not_below_pgd"
    assert check.passed == all(curves["pgd"][e] - curves["autoattack"][e] <= settings.tolerance for e in settings.eps)


def test_the_overstatement_check_fails_when_pgd_overstates():
    curves = {"pgd": {0.1: 0.80, 0.2: 0.50}, "autoattack": {0.1: 0.79, 0.2: 0.45}}
    check = rb.check_autoattack_agrees(curves, 0.02)
    assert not check.passed and "overstated" in check.detail
    assert check.numbers["gap.eps_0.2"] == pytest.approx(0.05)
    assert rb.check_autoattack_agrees({"pgd": {0.1: 0.80}, "autoattack": {0.1: 0.79}}, 0.02).passed


def test_autoattack_accepts_flat_inputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    x, y = torch.rand(20, 12), torch.randint(0, 3, (20,))
    attack = AutoAttack(model, 0.1, 3, **FAST)
    x_adv = attack(x, y)
    assert attack.components == ("apgd_ce", "fab_t", "square")  # APGD-T's DLR loss needs ≥ 4 classes
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert np.isfinite(x_adv.numpy()).all()
