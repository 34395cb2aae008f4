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


@pytest.mark.parametrize("defense", ["vat", "trades"])
def test_a_smoothness_defense_trains_the_same_model_whatever_the_targets_units(defense):
    """The defense's penalty is in target standard deviations like the supervised loss: a property in metres or in
    centimetres gives the same network (a penalty on raw outputs would weigh 10,000 times more on the second)."""
    x, y = regression_data(200)
    predictions = {}
    for unit in (1.0, 100.0):
        torch.manual_seed(0)
        model = Surrogate((3, 4), hidden=(16,))
        model.set_target_scale(y * unit)
        config = TrainingConfig(epochs=5, batch_size=32, lr=3e-3, defense=Defense(name=defense, vat_eps=0.5, eps=0.05))
        train_model(model, x, y * unit, x[:0], y[:0], config, x_unlabelled=x)
        predictions[unit] = model(x).detach() / unit
    torch.testing.assert_close(predictions[100.0], predictions[1.0], rtol=1e-4, atol=1e-4)


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


# -- TRADES and COMs ------------------------------------------------------------------------------------------------
def _train(defense: Defense, x, y, epochs=8, seed=0):
    torch.manual_seed(seed)
    model = Surrogate((3, 4), hidden=(32,))
    model.set_target_scale(y)
    config = TrainingConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=seed, defense=defense)
    history = train_model(model, x[:320], y[:320], x[320:], y[320:], config)
    return model, history


def test_trades_with_beta_zero_is_plain_training_weight_for_weight():
    x, y = regression_data()
    plain, plain_history = _train(Defense(name="none", eps=0.05, pgd_steps=3), x, y)
    trades, trades_history = _train(Defense(name="trades", trades_beta=0.0, eps=0.05, pgd_steps=3), x, y)
    assert [r.train_loss for r in trades_history.epochs] == [r.train_loss for r in plain_history.epochs]
    assert [r.validation_loss for r in trades_history.epochs] == [r.validation_loss for r in plain_history.epochs]
    for (name, a), b in zip(plain.state_dict().items(), trades.state_dict().values()):
        assert torch.equal(a, b), name
    # and β > 0 really changes training
    other, _ = _train(Defense(name="trades", trades_beta=6.0, eps=0.05, pgd_steps=3), x, y)
    assert not torch.equal(other.state_dict()["net.1.weight"], plain.state_dict()["net.1.weight"])


def test_trades_shrinks_the_regression_prediction_change_under_attack():
    from tasks.attacks import PGD, prediction_loss

    x, y = regression_data()
    change = {}
    for name, beta in (("none", 0.0), ("trades", 6.0)):
        model, _ = _train(Defense(name="none" if name == "none" else "trades", trades_beta=beta, eps=0.05,
                                  pgd_steps=3), x, y)
        with torch.no_grad():
            clean = model(x[320:])
        x_adv = PGD(model, 0.05, 10, loss=prediction_loss, generator=torch.Generator().manual_seed(0))(x[320:])
        with torch.no_grad():
            change[name] = float((model(x_adv) - clean).abs().mean())
    assert change["trades"] < 0.7 * change["none"], change


def test_coms_lowers_predictions_on_its_own_ascent_points():
    from tasks.defenses import l2_ascent

    x, y = regression_data()
    x = 0.5 * x  # training designs in a corner of the box: the ascent walks off the data
    over_estimate, mean_ascent = {}, {}
    for name in ("none", "coms"):
        model, history = _train(Defense(name=name, coms_limit=0.5, coms_steps=5, coms_step_size=0.1), x, y, epochs=10)
        ascended = l2_ascent(model, x, 5, 0.1)
        with torch.no_grad():
            mean_ascent[name] = float(model(ascended).mean())
            over_estimate[name] = float((model(ascended).mean() - model(x).mean()) / model.target_std)
        if name == "coms":
            assert len(history.coms_alpha) == 10 and all(a >= 0 for a in history.coms_alpha)
    assert mean_ascent["coms"] < mean_ascent["none"], mean_ascent
    assert over_estimate["coms"] < 0.5 * over_estimate["none"], over_estimate


def test_coms_refuses_classifiers():
    model = torch.nn.Linear(4, 2)
    x, y = torch.rand(8, 4), torch.randint(0, 2, (8,))
    with pytest.raises(ValueError, match="regression surrogates"):
        train_model(model, x, y, x, y, TrainingConfig(epochs=1, defense=Defense(name="coms")), task="classification")


def test_new_defenses_are_offered_everywhere_defenses_are_validated():
    from flows.parameters import CampaignParameters, SurrogateParameters
    from tasks.training import DEFENSES

    assert {"trades", "coms"} <= set(DEFENSES)
    assert CampaignParameters(defenses=("trades", "coms")).defenses == ("trades", "coms")
    assert SurrogateParameters().trades_beta == 6.0
    with pytest.raises(ValueError):
        Defense(name="trades", trades_beta=-1.0)


def test_surrogate_parameters_trades_beta_and_coms_limit_reach_training(monkeypatch):
    """The campaign's, train's and tune's surrogates are configured by ``training_config``: the user's TRADES β and
    COMs τ get into the Defense the trainer sees (not Defense's defaults), and change what is trained."""
    from flows.parameters import SurrogateParameters
    from tasks import pure_stages

    params = SurrogateParameters(epochs=3, batch_size=32, lr=3e-3, eps=0.05, pgd_steps=3, hidden=(16,),
                                 trades_beta=0.0, coms_limit=0.25)
    assert pure_stages.training_config(params, "trades", 0).defense.trades_beta == 0.0
    assert pure_stages.training_config(params, "coms", 0).defense.coms_limit == 0.25
    seen = []
    real_train_model = pure_stages.train_model
    monkeypatch.setattr(pure_stages, "train_model",
                        lambda *args, **kwargs: seen.append(args[5]) or real_train_model(*args, **kwargs))
    x, y = regression_data()

    def train(defense, **changes):
        config = pure_stages.training_config(params.model_copy(update=changes), defense, 0)
        torch.manual_seed(0)
        model, _ = pure_stages.train_surrogate((3, 4), (16,), config, x[:320], y[:320], x[320:], y[320:], None)
        return model

    plain, trades_zero, trades_six = train("none"), train("trades"), train("trades", trades_beta=6.0)
    assert [c.defense.trades_beta for c in seen] == [0.0, 0.0, 6.0]
    # β = 0 from the parameters is plain training weight for weight; β = 6 trains another model.
    for a, b, c in zip(plain.state_dict().values(), trades_zero.state_dict().values(), trades_six.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(plain.state_dict().values(), trades_six.state_dict().values()))
    train("coms", coms_limit=0.25)
    assert seen[-1].defense.name == "coms" and seen[-1].defense.coms_limit == 0.25
