import pytest
import torch
from torch import nn

from tasks.search.gradient import SearchConfig, gradient_search


class OneHotScorer(nn.Module):
    """Linear in a (L, V) one-hot input: the best design takes the token of largest weight at every position."""

    def __init__(self, weights):
        super().__init__()
        self.w = nn.Parameter(weights)

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2))


def one_hot(indices, v):
    return nn.functional.one_hot(indices, v).float()


def test_signed_search_reaches_the_linear_optimum_for_every_seed():
    # One improving token per position: sign ascent must find exactly it (signs carry no magnitudes).
    torch.manual_seed(0)
    w = -torch.rand(5, 4)
    w[torch.arange(5), torch.randint(0, 4, (5,))] = 1.0
    model = OneHotScorer(w)
    seeds = one_hot(torch.randint(0, 4, (16, 5)), 4)
    discretize = lambda x: one_hot(x.argmax(-1), 4)  # noqa: E731
    traj = gradient_search(model, seeds, SearchConfig(steps=30, step_size=0.1), lambda x: x.clamp(0, 1),
                           discretize, 0.0, 1.0)
    best = one_hot(w.argmax(-1), 4)
    assert torch.equal(discretize(traj.final), best.expand(16, -1, -1))
    # Every seed's step-0 record is the seed itself, with the model's prediction on it.
    start = traj.step == 0
    assert torch.equal(traj.seed_index[start], torch.arange(16))
    assert torch.allclose(traj.predicted[start], model(seeds).detach())
    assert traj.points.dtype == torch.uint8  # one-hot vertices are stored compactly


def test_predictions_along_the_trajectory_never_fall_for_a_linear_model():
    # Ties at the box edge go to the seed's token, so a position changes only to a better token.
    torch.manual_seed(3)
    w = torch.randn(3, 6)
    model = OneHotScorer(w)
    seeds = one_hot(torch.randint(0, 6, (8, 3)), 6)
    discretize = lambda x: one_hot((x + 1e-4 * seeds).argmax(-1), 6)  # noqa: E731 (the molecule designer's rule)
    traj = gradient_search(model, seeds, SearchConfig(steps=40, step_size=0.05), lambda x: x.clamp(0, 1),
                           discretize, 0.0, 1.0)
    for s in range(8):
        predictions = traj.predicted[traj.seed_index == s]
        assert (predictions[1:] >= predictions[:-1] - 1e-5).all()


def test_eps_ball_and_box_hold_for_signed_and_adam():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0))
    x0 = torch.rand(5, 3, 4) * 0.5
    for method, size in (("signed", 0.05), ("adam", 0.1)):
        traj = gradient_search(model, x0, SearchConfig(method=method, steps=25, step_size=size, eps=0.2),
                               lambda x: x.clamp(0, 1), lower=0.0, upper=1.0)
        assert (traj.final - x0).abs().max() <= 0.2 + 1e-6
        assert traj.final.min() >= 0 and traj.final.max() <= 1
        assert (model(traj.final) > model(x0)).all()


def test_bad_search_settings_are_rejected():
    with pytest.raises(ValueError, match="signed, l2, adam"):
        SearchConfig(method="newton")
    with pytest.raises(ValueError, match="positive"):
        SearchConfig(steps=0)
