"""One conformance test for every registered designer (``designers.DESIGNERS`` and the toy ``TOY_DESIGNERS``):
whatever the domain, the base counts and validates the oracle, the defaults of the protocol work, keys round-trip
and samples lie in the box. A new designer joins by being registered in :func:`designers.make_designer`.

(No ``__init__.py`` here, on purpose: an installed ``tests`` package must not shadow this folder; the root
``tests/conftest.py`` applies.)"""

import numpy as np
import pytest
import torch

from designers import DESIGNERS, TOY_DESIGNERS, make_designer
from designers.base import ConstraintReport, Designer, OracleResult

#: Cheap settings per designer: the car on the smoke lattice (plumbing only), one worker for RDKit.
SETTINGS = {"molecule": {"workers": 1}, "car": {"resolution": "smoke", "compile": False, "threads": 1}}
N = 3


@pytest.fixture(scope="module", params=DESIGNERS + TOY_DESIGNERS)
def designer(request) -> Designer:
    return make_designer(request.param, **SETTINGS.get(request.param, {}))


@pytest.fixture(scope="module")
def designs(designer):
    return designer.sample(N, np.random.default_rng(11))


def test_every_designer_is_registered_and_named():
    for name in DESIGNERS + TOY_DESIGNERS:
        assert make_designer(name, **SETTINGS.get(name, {})).name == name
    with pytest.raises(ValueError, match="unknown designer 'boat'"):
        make_designer("boat")


def test_the_base_counts_every_design_exactly_once(designer, designs):
    assert isinstance(designer, Designer)
    assert type(designer).oracle is Designer.oracle, "a designer implements _oracle; the base's oracle() counts"
    before = designer.oracle_calls
    result = designer.oracle(designs)
    assert designer.oracle_calls - before == N
    assert isinstance(result, OracleResult) and len(result) == len(result.failures) == N
    assert all(len(values) == N for values in result.extras.values())
    assert np.isnan(result.scores[~result.valid]).all() and np.isfinite(result.scores[result.valid]).all()
    assert result.valid.any(), result.failures
    designer.oracle([])
    assert designer.oracle_calls - before == N  # an empty call costs nothing


def test_the_base_refuses_an_oracle_answer_of_the_wrong_length(designer, designs, monkeypatch):
    monkeypatch.setattr(designer, "_oracle", lambda ds: OracleResult(np.zeros(len(ds) - 1), [None] * (len(ds) - 1)))
    with pytest.raises(RuntimeError, match=f"returned {N - 1} scores for {N} designs"):
        designer.oracle(designs)


def test_samples_are_reproducible_and_lie_in_the_box(designer, designs):
    assert [designer.key(d) for d in designer.sample(N, np.random.default_rng(11))] == [designer.key(d) for d in designs]
    x = designer.encode(designs)
    assert x.shape == (N, *designer.input_shape)
    lower = torch.as_tensor(designer.lower, dtype=x.dtype)
    upper = torch.as_tensor(designer.upper, dtype=x.dtype)
    assert (x >= lower - 1e-6).all() and (x <= upper + 1e-6).all()
    noisy = designer.project(x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
    assert noisy.shape == x.shape
    assert (noisy >= lower - 1e-5).all() and (noisy <= upper + 1e-5).all()


def test_keys_round_trip_through_parse_and_the_encoding(designer, designs):
    keys = [designer.key(d) for d in designs]
    assert [designer.key(designer.parse(k)) for k in keys] == keys
    x = designer.encode(designs)
    discrete = designer.discretize(x)  # the base's default or the domain's own
    assert discrete.shape == x.shape
    assert [designer.key(d) for d in designer.decode(discrete)] == keys
    with pytest.raises(ValueError):
        designer.parse("not a design ((")


def test_constraints_and_report_have_one_entry_per_design(designer, designs):
    report = designer.constraints(designs, designs)
    assert isinstance(report, ConstraintReport) and len(report.violations) == N
    assert all(len(np.asarray(values)) == N for values in report.values.values())
    side = designer.report(designs)  # {} by default
    assert isinstance(side, dict) and all(len(np.asarray(values)) == N for values in side.values())
    empty = designer.constraints([], [])
    assert empty.violations == [] and len(empty.satisfied) == 0


def test_a_known_optimum_is_reached_by_the_optimal_design(designer):
    if designer.optimum is None:
        pytest.skip(f"{designer.name} has no known optimum")
    assert designer.oracle([designer.optimal_design]).scores[0] == pytest.approx(designer.optimum)
    other = designer.sample(8, np.random.default_rng(0))
    assert (designer.oracle(other).scores <= designer.optimum + 1e-9).all()
