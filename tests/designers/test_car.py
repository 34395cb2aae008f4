"""The car design domain: representation, rules and projection, text form, power balance, oracle, pictures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from designers.base import Designer
from designers.car import (
    AIR_DENSITY,
    CABIN_STATIONS,
    GRAVITY,
    CarBlueprint,
    CarDesigner,
    Resolution,
    top_speed,
)

#: A lattice so coarse that a flow takes well under a second: for the oracle's plumbing, not its physics.
SMOKE = Resolution(cells_per_metre=4.0, flow_times=12.0, ramp_flow_times=4.0, average_flow_times=4.0)

SALOON = CarBlueprint(4.5, 1.8, 0.15, (0.55, 0.85, 1.30, 1.38, 1.40, 1.38, 1.30, 1.05, 0.80))


@pytest.fixture()
def designer() -> CarDesigner:
    return CarDesigner(compile=False)


def test_implements_the_designer_protocol(designer):
    assert isinstance(designer, Designer)
    assert designer.name == "car"
    assert designer.input_shape == (12,)
    assert torch.equal(designer.lower, torch.zeros(12)) and torch.equal(designer.upper, torch.ones(12))
    assert designer.oracle_calls == 0


def test_samples_are_feasible_varied_and_reproducible(designer):
    designs = designer.sample(64, np.random.default_rng(3))
    assert [designer.violations(d) for d in designs] == [None] * 64
    assert designer.sample(64, np.random.default_rng(3)) == designs
    x = designer.encode(designs)
    assert x.min() >= 0 and x.max() <= 1
    assert x.std(0).min() > 0.03  # every parameter varies across the data set


def test_encode_decode_round_trip(designer):
    designs = designer.sample(8, np.random.default_rng(0)) + [SALOON]
    back = designer.decode(designer.encode(designs).double())
    for original, decoded in zip(designs, back):
        np.testing.assert_allclose(decoded.vector(), original.vector(), atol=1e-12)
    back32 = designer.decode(designer.encode(designs))
    np.testing.assert_allclose(back32[-1].vector(), SALOON.vector(), atol=1e-6)


def test_key_parse_round_trip(designer):
    key = designer.key(SALOON)
    assert key == "car:L=4.5000,W=1.8000,c=0.1500,h=0.5500/0.8500/1.3000/1.3800/1.4000/1.3800/1.3000/1.0500/0.8000"
    assert designer.parse(key) == SALOON
    for design in designer.sample(8, np.random.default_rng(1)):
        parsed = designer.parse(designer.key(design))
        assert designer.key(parsed) == designer.key(design)
        np.testing.assert_allclose(parsed.vector(), design.vector(), atol=5e-5)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("CCO", "car:"),
        ("car:L=4.5,W=1.8,c=0.15", "'h'"),
        ("car:L=4.5,W=1.8,c=0.15,h=1/1/1/1/1/1/1/1/1,x=2", "x=2"),
        ("car:L=abc,W=1.8,c=0.15,h=1/1/1/1/1/1/1/1/1", "L='abc'"),
        ("car:L=4.5,W=1.8,c=0.15,h=1/1/1/1/oops/1/1/1/1", "h[4]='oops'"),
        ("car:L=4.5,W=1.8,c=0.15,h=1/1/1", "3 station heights"),
        ("car:L=4.5,L=4.6,W=1.8,c=0.15,h=1/1/1/1/1/1/1/1/1", "'L' given twice"),
    ],
)
def test_parse_names_the_culprit(designer, text, culprit):
    with pytest.raises(ValueError, match=culprit.replace("[", r"\[").replace("]", r"\]")):
        designer.parse(text)


def test_project_lands_in_the_feasible_set(designer):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(500, 12) * 3, torch.rand(500, 12)])
    x[0, 4] = float("nan")
    x[1, 0] = float("inf")
    projected = designer.project(x)
    assert projected.shape == x.shape and projected.dtype == x.dtype
    assert torch.isfinite(projected).all()
    assert projected.min() >= 0 and projected.max() <= 1
    assert designer.is_feasible(projected).all()
    assert not designer.is_feasible(x).all()
    assert all(designer.violations(d) is None for d in designer.decode(projected))
    # Already-feasible points stay put (strictly inside: bit for bit, as they are never iterated); others move
    # about as little as a Euclidean projection would.
    data = designer.encode(designer.sample(32, np.random.default_rng(2)))
    torch.testing.assert_close(designer.project(data), data, atol=1e-6, rtol=0)
    inside = 0.5 * data + 0.5 * torch.as_tensor(designer._interior, dtype=data.dtype)
    assert designer.is_feasible(inside, tolerance=0.0).all() and torch.equal(designer.project(inside), inside)
    assert torch.allclose(designer.project(projected), projected, atol=1e-5)


def test_project_is_near_euclidean(designer):
    """Dykstra's iterates plus the exact repair land within 2 % of the true projection distance (SLSQP)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    for _ in range(4):
        z = rng.normal(0.5, 0.8, 12)
        ours = designer.project(torch.as_tensor(z)).numpy()
        rows, bounds, _ = designer.linear_constraints()
        best = minimize(
            lambda y: ((y - z) ** 2).sum(), np.full(12, 0.5), jac=lambda y: 2 * (y - z), method="SLSQP",
            constraints=[{"type": "ineq", "fun": lambda y: bounds - rows @ y, "jac": lambda y: -rows}],
        )
        assert np.linalg.norm(ours - z) <= 1.02 * np.linalg.norm(best.x - z) + 1e-9


def test_cabin_fits_wherever_the_stations_clear_the_roof(designer):
    """PCHIP does not overshoot, so station checks guarantee the whole cabin span clears the roof."""
    for design in designer.sample(32, np.random.default_rng(5)):
        fractions = np.linspace(CABIN_STATIONS[0] / 8, CABIN_STATIONS[-1] / 8, 400)
        assert design.profile(fractions).min() >= designer.cabin_roof_m - 5e-4


def test_top_speed_solves_the_power_balance():
    power = np.array([99e3, 50e3, 300e3])
    drag_area = np.array([0.7, 1.8, 0.3])
    rolling = 0.013 * np.array([1400.0, 900.0, 1800.0]) * GRAVITY
    v = top_speed(power, drag_area, rolling)
    residual = (0.5 * AIR_DENSITY * drag_area * v**2 + rolling) * v - power
    assert np.abs(residual).max() < 1e-6 * power.max()
    # By hand: 0.42875·59.088³ + 178.54·59.088 = 88 451 + 10 549 = 99 000 W (≈ 213 km/h).
    assert v[0] == pytest.approx(59.088, abs=1e-3)
    assert np.all(np.diff(top_speed(np.full(3, 99e3), np.array([0.5, 1.0, 2.0]), np.full(3, 180.0))) < 0)


def test_mass_and_area_models_are_plausible(designer):
    assert 1300 < designer.mass_kg(SALOON) < 1550
    assert designer.frontal_area_m2(SALOON) == pytest.approx(1.8 * 1.40)
    heavier = CarDesigner(engine_power_kw=200.0, compile=False)
    assert heavier.mass_kg(SALOON) - designer.mass_kg(SALOON) == pytest.approx(1.8 * 90.0)


def test_oracle_scores_valid_designs_and_names_the_rest():
    designer = CarDesigner(resolution=SMOKE, compile=False)
    no_cabin = dataclasses.replace(SALOON, heights_m=(0.55, 0.85, 1.30, 1.38, 1.00, 1.38, 1.30, 1.05, 0.80))
    designs = [
        SALOON,
        dataclasses.replace(SALOON, length_m=float("nan")),
        dataclasses.replace(SALOON, length_m=7.0),
        no_cabin,
        dataclasses.replace(SALOON, ride_height_m=0.05),
        "not a car",
        dataclasses.replace(SALOON, heights_m=(0.55, 0.85, 1.30, 1.38, 1.40, 1.38, 1.30, 1.05, 0.20)),
        designer.sample(1, np.random.default_rng(0))[0],
    ]
    result = designer.oracle(designs)
    assert designer.oracle_calls == len(designs)
    assert len(result) == len(designs)
    assert result.valid.tolist() == [True, False, False, False, False, False, False, True]
    assert "non-finite parameter length_m" in result.failures[1]
    assert "length_m=7" in result.failures[2]
    assert "cabin box does not fit" in result.failures[3] and "station 4" in result.failures[3]
    assert "minimum ground clearance" in result.failures[4]
    assert "not a CarBlueprint" in result.failures[5]
    assert "curved" in result.failures[6]
    assert np.isnan(result.scores[~result.valid]).all()
    valid = result.valid
    assert np.isfinite(result.scores[valid]).all() and (result.scores[valid] > 50).all()
    extras = result.extras
    assert set(extras) >= {"C_D", "A", "m", "v"}
    np.testing.assert_allclose(result.scores[valid], extras["v"][valid] * 3.6)
    assert np.abs(extras["power_residual"][valid]).max() < 1e-3
    assert (extras["C_D"][valid] > 0).all()
    designer.oracle([SALOON])
    assert designer.oracle_calls == len(designs) + 1


def test_oracle_chunks_batches_like_one_run():
    whole = CarDesigner(resolution=SMOKE, compile=False)
    chunked = CarDesigner(resolution=SMOKE, compile=False, max_batch=2)
    designs = whole.sample(3, np.random.default_rng(7))
    np.testing.assert_allclose(chunked.oracle(designs).scores, whole.oracle(designs).scores, rtol=1e-5)


def test_constraints_report_margins_and_the_seed_rule():
    designer = CarDesigner(compile=False, max_change_from_seed_m=0.2)
    lower_nose = dataclasses.replace(SALOON, heights_m=(0.25,) + SALOON.heights_m[1:])
    slightly = dataclasses.replace(SALOON, heights_m=(0.45,) + SALOON.heights_m[1:])
    no_cabin = dataclasses.replace(SALOON, heights_m=SALOON.heights_m[:3] + (1.0,) + SALOON.heights_m[4:])
    report = designer.constraints([slightly, lower_nose, no_cabin], [SALOON, SALOON, SALOON])
    assert report.violations[0] is None
    assert "moved 0.300 m from its seed" in report.violations[1]
    assert "cabin box does not fit" in report.violations[2]
    assert report.satisfied.tolist() == [True, False, False]
    np.testing.assert_allclose(report.values["change_from_seed_m"], [0.10, 0.30, 0.38])
    np.testing.assert_allclose(report.values["cabin_margin_m"], [0.10, 0.10, -0.20])
    np.testing.assert_allclose(report.values["overall_height_m"], [1.55, 1.55, 1.55])
    with pytest.raises(ValueError, match="seeds"):
        designer.constraints([SALOON], [])


def test_render_writes_a_png(tmp_path, designer):
    path = tmp_path / "cars.png"
    designs = designer.sample(2, np.random.default_rng(8))
    designer.render([(SALOON, designs[0]), (SALOON, designs[1])], str(path), captions=["a", "b"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


def test_rules_are_linear_constraints_with_labels(designer):
    rows, bounds, labels = designer.linear_constraints()
    assert rows.shape == (len(bounds), 12) and len(labels) == len(bounds)
    assert sum("cabin" in label for label in labels) == len(CABIN_STATIONS)
    assert designer.is_feasible(designer.encode([SALOON])).all()
    custom = CarDesigner(cabin_roof_m=1.5, compile=False)  # other rules still leave room: constructible
    assert custom.is_feasible(custom.project(torch.rand(16, 12))).all()
    with pytest.raises(ValueError, match="infeasible"):
        CarDesigner(cabin_roof_m=1.65, max_second_difference_m=0.0, station_height_range_m=(0.15, 1.6))


def test_unknown_resolution_is_refused():
    with pytest.raises(ValueError, match="resolution"):
        CarDesigner(resolution="ultra")


@pytest.mark.slow
def test_streamlined_body_has_less_drag_than_a_box_of_equal_height():
    designer = CarDesigner()  # coarse resolution, the default
    box = CarBlueprint(4.5, 1.8, 0.15, (1.5,) * 9)
    streamlined = CarBlueprint(4.5, 1.8, 0.15, (0.5, 1.0, 1.4, 1.5, 1.5, 1.5, 1.4, 1.05, 0.65))
    result = designer.oracle([box, streamlined])
    assert result.valid.all()
    drag_box, drag_streamlined = result.extras["C_D"]
    assert drag_streamlined < 0.8 * drag_box
    assert result.scores[1] > result.scores[0]  # same frontal area and similar mass: less drag is faster


def test_thread_setting_is_restored_after_the_flow():
    before = torch.get_num_threads()
    designer = CarDesigner(resolution=SMOKE, compile=False, threads=1)
    assert designer.oracle([SALOON]).valid.all()
    assert torch.get_num_threads() == before


_KILLED_LABELLER = """
import numpy as np
from designers.car import CarDesigner

designer = CarDesigner(max_batch=2)
designer.drag_coefficients(designer.sample(12, np.random.default_rng(3)))
print("finished", flush=True)
"""


def test_a_killed_batch_of_flows_keeps_its_finished_chunks(tmp_path, monkeypatch):
    """Issue 16: a kill mid-batch loses only the chunk in flight; the batch run again reads the finished chunks
    back (same numbers as a fresh run), and forgets them once the whole batch is done."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from designers.flow_chunks import chunk_folder

    home = tmp_path / "prefect"
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    victim = subprocess.Popen([sys.executable, "-c", _KILLED_LABELLER], env=env, stdout=subprocess.PIPE, text=True)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    deadline = time.monotonic() + 180
    while not list(chunk_folder().glob("*/*.json")) and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    out, _ = victim.communicate()
    kept = len(list(chunk_folder().glob("*/*.json")))
    assert "finished" not in out and 1 <= kept < 6, f"the batch was not killed midway ({kept} chunks kept)"

    designer = CarDesigner(max_batch=2)
    designs = designer.sample(12, np.random.default_rng(3))
    drag, lift, failures = designer.drag_coefficients(designs)
    assert designer._chunks_restored == kept
    assert not list(chunk_folder().glob("*/*.json"))  # the batch is done: nothing left behind

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "fresh"))
    fresh = CarDesigner(max_batch=2)
    fresh_drag, fresh_lift, fresh_failures = fresh.drag_coefficients(designs)
    assert fresh._chunks_restored == 0 and failures == fresh_failures
    np.testing.assert_allclose(drag, fresh_drag, rtol=1e-4)
    np.testing.assert_allclose(lift, fresh_lift, rtol=1e-4, atol=1e-6)
