"""The torch cores on a CUDA device give what they give on the CPU (skipped where no GPU is present; the CPU half
of the defenses' comparison runs everywhere, so its per-defense limits are checked without a GPU too).

These import nothing from Prefect, MLflow or RDKit, so they also run on a bare GPU machine with only torch,
numpy and scipy: ``python -m pytest --noconftest tests/tasks/test_cuda.py tests/designers/test_lbm.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from designers.car import CarDesigner
from tasks.attacks import FGSM, PGD, prediction_loss, squared_error_loss
from tasks.search.gradient import SearchConfig, gradient_search
from tasks.surrogate import Surrogate
from tasks.training import DEFENSES, Defense, TrainingConfig, train_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def linear_model(weights: torch.Tensor) -> nn.Module:
    model = nn.Linear(weights.shape[1], 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(weights)
    return nn.Sequential(model, nn.Flatten(0))


@needs_cuda
def test_fgsm_on_a_linear_model_is_eps_sign_w_on_cuda():
    weights = torch.tensor([[0.5, -2.0, 0.0, 3.0]])
    model = linear_model(weights).cuda()
    x = torch.full((3, 4), 0.5, device="cuda")
    # The loss is the prediction itself, so FGSM ascends it: along +sign(w), zero where w is.
    x_adv = FGSM(model, 0.1, prediction_loss)(x, None)
    assert x_adv.device.type == "cuda"
    torch.testing.assert_close(x_adv - x, (0.1 * weights.sign()).expand(3, 4).cuda())


@needs_cuda
def test_pgd_stays_in_its_ball_on_cuda():
    torch.manual_seed(0)
    model = Surrogate((12,), hidden=(32,)).cuda()
    x = torch.rand(16, 12, device="cuda")
    y = torch.rand(16, device="cuda")
    x_adv = PGD(model, 0.05, 5, loss=squared_error_loss, lower=0.0, upper=1.0)(x, y)
    assert x_adv.device.type == "cuda"
    assert float((x_adv - x).abs().max()) <= 0.05 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


#: The standardised validation MSE each defense reaches in :func:`_train_linear_target` (8 epochs, ε = 0.05 L∞,
#: VAT ε = 0.15 L2, the defenses' default weights); a constant prediction scores about 1.0. Measured on the CPU
#: (seeds 0–2, the last epoch): none 0.014–0.021, fgsm 0.029–0.038, pgd 0.026–0.033, vat 0.029–0.034, trades
#: 0.352–0.362, coms 0.359–0.408.
#: * none / fgsm / pgd / vat fit the linear target: < 0.2.
#: * trades gives accuracy away by design: β = 6 weighs the prediction's change inside the ε-ball, which for the
#:   true target is (ε·‖w‖₁/σ_y)² = (0.05 · 6.55 / 0.63)² ≈ 0.27 target variances, against the MSE; the minimiser
#:   of (1 − c)² + β·0.27·c² over the slope's scale c is c ≈ 0.38, an MSE of ≈ 0.38 at convergence. Limit 0.5.
#: * coms penalises the mean rise along its own 5 × 0.1 L2 ascent (≈ 1.7 target std for the true slope, over its
#:   limit τ = 0.5), so with α from 1 the slope grows slowly and the loss is still falling at epoch 8
#:   (0.82 → 0.36–0.41). Limit 0.6.
VALIDATION_LOSS_LIMIT = {"none": 0.2, "fgsm": 0.2, "pgd": 0.2, "vat": 0.2, "trades": 0.5, "coms": 0.6}


def _train_linear_target(defense: str, device: str) -> float:
    """The last epoch's standardised validation MSE of a small surrogate trained with ``defense`` on ``device``."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(512, 12, generator=generator)
    y = x @ torch.linspace(-1.0, 1.0, 12) + 0.05 * torch.randn(512, generator=generator)
    torch.manual_seed(0)
    model = Surrogate((12,), hidden=(64, 32)).to(device)
    model.set_target_scale(y.to(device))
    config = TrainingConfig(epochs=8, batch_size=64, lr=3e-3, defense=Defense(name=defense, eps=0.05, vat_eps=0.15))
    history = train_model(model, x[:400].to(device), y[:400].to(device), x[400:].to(device), y[400:].to(device),
                          config, x_unlabelled=x[:100].to(device))
    assert next(model.parameters()).device.type == device
    return history.epochs[-1].validation_loss


def test_every_defense_has_a_validation_limit():
    assert set(VALIDATION_LOSS_LIMIT) == set(DEFENSES)


@pytest.mark.parametrize("defense", ["trades", "coms"])
def test_the_robustness_trading_defenses_reach_their_limit_on_cpu(defense):
    """The limits that are not "fits the target" (trades, coms) checked on the CPU, so they hold without a GPU."""
    assert _train_linear_target(defense, "cpu") < VALIDATION_LOSS_LIMIT[defense]


@needs_cuda
@pytest.mark.parametrize("defense", DEFENSES)
def test_every_defense_trains_on_cuda_as_on_cpu(defense):
    losses = {device: _train_linear_target(defense, device) for device in ("cpu", "cuda")}
    # Both devices get below the defense's limit, and to the same level within float noise.
    assert losses["cuda"] < VALIDATION_LOSS_LIMIT[defense] and losses["cpu"] < VALIDATION_LOSS_LIMIT[defense]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.25, abs=0.02)


@needs_cuda
def test_gradient_search_on_cuda_follows_the_cpu_trajectory():
    torch.manual_seed(0)
    model = Surrogate((12,), hidden=(32,))
    x0 = torch.rand(8, 12, generator=torch.Generator().manual_seed(1))
    config = SearchConfig(method="l2", steps=20, step_size=0.05)
    cpu = gradient_search(model, x0, config, lower=0.0, upper=1.0)
    gpu = gradient_search(model.cuda(), x0.cuda(), config, lower=0.0, upper=1.0)
    assert gpu.final.device.type == "cpu"  # trajectories come back to the host for decoding
    torch.testing.assert_close(gpu.final, cpu.final, rtol=1e-4, atol=1e-5)
    assert len(gpu) == len(cpu)


@needs_cuda
def test_car_oracle_on_cuda_matches_cpu_and_its_compiled_step():
    rng = np.random.default_rng(0)
    cpu_designer = CarDesigner(device="cpu", compile=False)
    designs = cpu_designer.sample(4, rng)
    cpu = cpu_designer.oracle(designs)
    eager = CarDesigner(device="cuda", compile=False).oracle(designs)
    compiled = CarDesigner(device="cuda", compile=True).oracle(designs)
    assert cpu.valid.all() and eager.valid.all() and compiled.valid.all()
    np.testing.assert_allclose(eager.scores, cpu.scores, rtol=1e-3)
    np.testing.assert_allclose(compiled.scores, eager.scores, rtol=1e-3)
