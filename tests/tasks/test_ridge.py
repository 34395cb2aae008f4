"""The streaming ridge regression (tasks/ridge.py): the closed form of ridge with an unpenalised intercept, however
the rows arrive."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from tasks.ridge import StreamingRidge


def data(n=300, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g) * 3
    y = x @ torch.randn(d, generator=g) + 5.0 + 0.1 * torch.randn(n, generator=g)
    return x, y


def test_rows_added_in_batches_give_sklearns_ridge():
    x, y = data()
    ridge = StreamingRidge(alpha=3.0)
    for part in torch.arange(len(x)).split(70):      # as a loop adds its rounds
        ridge.add(x[part], y[part])
    reference = Ridge(alpha=3.0).fit(x.double().numpy(), y.double().numpy())
    probe, _ = data(n=50, seed=1)
    np.testing.assert_allclose(ridge.predict(probe).numpy(), reference.predict(probe.double().numpy()), atol=1e-4)
    assert ridge.n == len(x)


def test_non_finite_targets_are_skipped_and_a_bad_alpha_is_refused():
    x, y = data()
    with_nan = y.clone()
    with_nan[::3] = float("nan")
    skipped, kept = StreamingRidge(), StreamingRidge()
    skipped.add(x, with_nan)
    kept.add(x[torch.isfinite(with_nan)], y[torch.isfinite(with_nan)])
    assert skipped.n == kept.n == 200
    torch.testing.assert_close(skipped.predict(x), kept.predict(x))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        StreamingRidge(alpha=0.0)
    with pytest.raises(ValueError, match="no finite targets"):
        StreamingRidge().fit()


def test_the_posterior_std_is_bayesian_linear_regressions_and_grows_away_from_the_data():
    x, y = data(n=120, d=8)
    ridge = StreamingRidge(alpha=2.0)
    for part in torch.arange(len(x)).split(50):
        ridge.add(x[part], y[part])
    probe = torch.cat([x[:5], x[:5] + 10.0])  # five rows it has seen, five far from all of them
    rows, targets = x.double().numpy(), y.double().numpy()
    centred = rows - rows.mean(axis=0)
    precision = centred.T @ centred + 2.0 * np.eye(8)
    fitted = Ridge(alpha=2.0).fit(rows, targets)
    noise = np.sum((targets - fitted.predict(rows)) ** 2) / (len(rows) - 1)
    away = probe.double().numpy() - rows.mean(axis=0)
    expected = np.sqrt(noise * (np.einsum("ij,jk,ik->i", away, np.linalg.inv(precision), away) + 1 / len(rows)))
    np.testing.assert_allclose(ridge.std(probe).numpy(), expected, rtol=1e-4)
    assert (ridge.std(probe)[5:] > 10 * ridge.std(probe)[:5]).all()
