"""Random restarts of gradient search, the car random baseline, and the anytime (best-so-far) bookkeeping that
benchmarks/equal_budget.py builds its curves from."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tasks.search.anytime import best_so_far
from tasks.search.black_box import black_box_metrics
from tasks.search.driver import SearchResult
from tasks.search.gradient import SearchConfig, gradient_search, random_starts


def one_hot(indices, v):
    return nn.functional.one_hot(indices, v).float()


def test_random_starts_keep_the_seed_first_and_stay_in_the_ball_and_box():
    seeds = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.2, 0.2]])
    generator = torch.Generator().manual_seed(0)
    centres, starts, origin = random_starts(seeds, 4, 0.3, generator=generator, lower=0.0, upper=1.0)
    assert origin.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(centres, seeds[origin])
    assert torch.equal(starts[::4], seeds)  # copy 0 of each seed is the seed itself
    assert ((starts - centres).abs() <= 0.3 + 1e-6).all()
    assert ((starts >= 0) & (starts <= 1)).all()
    assert len({tuple(row.tolist()) for row in starts}) == 8  # the other copies are distinct
    again = random_starts(seeds, 4, 0.3, generator=torch.Generator().manual_seed(0), lower=0.0, upper=1.0)[1]
    assert torch.equal(starts, again)  # reproducible with a seeded generator


def test_random_starts_below_half_keep_every_one_hot_token():
    seeds = one_hot(torch.randint(0, 5, (3, 7), generator=torch.Generator().manual_seed(1)), 5)
    _, starts, origin = random_starts(seeds, 16, 0.45, lambda x: x.clamp(0, 1), torch.Generator().manual_seed(2),
                                      0.0, 1.0)
    assert torch.equal(starts.argmax(-1), seeds[origin].argmax(-1))


def test_a_fraction_of_positions_perturbed_at_radius_one_is_a_random_token_edit():
    seeds = one_hot(torch.randint(0, 5, (2, 40), generator=torch.Generator().manual_seed(3)), 5)
    _, starts, origin = random_starts(seeds, 200, 1.0, lambda x: x.clamp(0, 1), torch.Generator().manual_seed(4),
                                      0.0, 1.0, fraction=0.05)
    untouched = (starts == seeds[origin]).all(-1)  # whole positions are perturbed or left alone
    assert 0.9 < untouched.float().mean() < 0.99
    edits = (starts.argmax(-1) != seeds[origin].argmax(-1)).sum(-1).float()
    assert edits[::200].sum() == 0 and 0.5 < edits.mean() < 3  # a token or two changed, copy 0 is the seed
    unperturbed = random_starts(seeds, 3, 1.0, fraction=0.0)[1]
    assert torch.equal(unperturbed, seeds.repeat_interleave(3, 0))


def test_random_starts_reject_bad_arguments():
    with pytest.raises(ValueError):
        random_starts(torch.zeros(2, 3), 0, 0.1)
    with pytest.raises(ValueError):
        random_starts(torch.zeros(2, 3), 2, -0.1)
    with pytest.raises(ValueError):
        random_starts(torch.zeros(2, 3), 2, 0.1, fraction=1.5)


class Bumpy(nn.Module):
    """Two peaks on [0, 1]: which one an ascent climbs depends on where it starts."""

    def forward(self, x):
        return torch.exp(-((x - 0.2) ** 2).sum(1) / 0.02) + torch.exp(-((x - 0.8) ** 2).sum(1) / 0.02)


def test_restarted_search_meets_more_designs_and_keeps_the_ball_around_the_seed():
    seeds = torch.full((2, 2), 0.5)
    config = SearchConfig(method="l2", steps=20, step_size=0.05, eps=0.4)
    discretize = lambda x: (x * 20).round() / 20  # noqa: E731  (a grid of distinct designs)
    plain = gradient_search(Bumpy(), seeds, config, lambda x: x.clamp(0, 1), discretize, 0.0, 1.0)
    centres, starts, origin = random_starts(seeds, 8, 0.3, generator=torch.Generator().manual_seed(0),
                                            lower=0.0, upper=1.0)
    restarted = gradient_search(Bumpy(), centres, config, lambda x: x.clamp(0, 1), discretize, 0.0, 1.0,
                                start=starts)
    assert torch.equal(restarted.points[restarted.step == 0].float(), discretize(starts))
    assert ((restarted.final - centres).abs() <= 0.4 + 1e-6).all()  # the ε-ball is the seed's, not the start's

    def distinct(trajectory, owner):
        return len({(int(owner[s]), tuple(p.tolist())) for s, p in zip(trajectory.seed_index, trajectory.points)})

    assert distinct(restarted, origin) > distinct(plain, torch.arange(2))
    with pytest.raises(ValueError):
        gradient_search(Bumpy(), seeds, config, start=starts)


def test_best_so_far_is_monotone_never_below_the_seed_and_skips_failures():
    verified = pd.DataFrame({
        "seed_index": [0, 0, 0, 1, 1],
        "call": [1, 2, 3, 1, 2],
        "true_score": [0.5, 3.0, np.nan, -4.0, -1.0],
        "oracle_failure": [None, None, "failed", None, None],
    })
    best = best_so_far(verified, np.array([1.0, -2.0]), [1, 2, 3])
    assert best.tolist() == [[1.0, 3.0, 3.0], [-2.0, -1.0, -1.0]]
    result = SearchResult(verified.assign(seed=0, design="x"), {}, [], 0.0)
    metrics = black_box_metrics(result, np.array([1.0, -2.0]), 3, checkpoints=[1, 2])
    assert metrics["best_score_at_1"] == pytest.approx((1.0 - 2.0) / 2)
    # the campaign's improvement may be < 0
    assert metrics["oracle_improvement_at_1"] == pytest.approx((0.5 - 1.0 + -4.0 + 2.0) / 2)
    assert metrics["improvement_at_1"] == pytest.approx(0.0)  # the protocol's: max(0, best - seed)
    assert metrics["improvement_at_2"] == pytest.approx((2.0 + 1.0) / 2)
