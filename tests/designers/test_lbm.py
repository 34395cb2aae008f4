"""The lattice-Boltzmann solver: lattice algebra, boundary links, per-element divergence, forces, validation."""

from __future__ import annotations

import math

import pytest
import torch

from designers.lbm import (
    OPPOSITE,
    SCHAEFER_TUREK_2D1_DRAG,
    VELOCITIES,
    WEIGHTS,
    FlowProblem,
    bounce_back_links,
    equilibrium,
    ramp_factor,
    schaefer_turek_2d1,
    simulate,
)


def uniform_stream(body: torch.Tensor, speed: float = 0.05, viscosity: float = 0.02, **kwargs) -> FlowProblem:
    """A uniform stream through a periodic box, imposed by sponges at both ends (no walls)."""
    batch, ny, nx = body.shape
    far_field = torch.zeros(2, ny, nx)
    far_field[0] = speed
    sponge = torch.zeros(ny, nx)
    sponge[:, :4] = torch.linspace(1.0, 0.25, 4)
    sponge[:, -4:] = torch.linspace(0.25, 1.0, 4)
    walls = torch.zeros(ny, nx, dtype=torch.bool)
    return FlowProblem(body=body, walls=walls, far_field=far_field, sponge=sponge, viscosity=viscosity, **kwargs)


def test_lattice_is_consistent():
    assert sum(WEIGHTS) == pytest.approx(1.0)
    for i, j in enumerate(OPPOSITE):
        assert VELOCITIES[j] == (-VELOCITIES[i][0], -VELOCITIES[i][1])
    # Isotropy of the second moment: Σ w c_a c_b = δ_ab / 3.
    assert sum(w * c[0] * c[0] for w, c in zip(WEIGHTS, VELOCITIES)) == pytest.approx(1 / 3)
    assert sum(w * c[0] * c[1] for w, c in zip(WEIGHTS, VELOCITIES)) == pytest.approx(0.0)


def test_equilibrium_reproduces_density_and_momentum():
    rho = torch.tensor([[1.1, 0.9]], dtype=torch.float64)
    ux = torch.tensor([[0.05, -0.08]], dtype=torch.float64)
    uy = torch.tensor([[0.02, 0.03]], dtype=torch.float64)
    feq = equilibrium(rho, ux, uy)
    cx = torch.tensor([c[0] for c in VELOCITIES], dtype=torch.float64).view(9, 1, 1)
    cy = torch.tensor([c[1] for c in VELOCITIES], dtype=torch.float64).view(9, 1, 1)
    torch.testing.assert_close(feq.sum(-3), rho)
    torch.testing.assert_close((feq * cx).sum(-3), rho * ux)
    torch.testing.assert_close((feq * cy).sum(-3), rho * uy)


def test_bounce_back_links_surround_a_solid_cell_without_wrapping():
    solid = torch.zeros(5, 6, dtype=torch.bool)
    solid[2, 3] = True
    links = bounce_back_links(solid)
    assert int(links.sum()) == 8  # one link from each neighbour, none for the rest direction
    assert not bool(links[:, 2, 3].any())  # the solid cell itself receives nothing
    assert bool(links[1, 2, 4])  # population 1 (+x) at the cell right of the solid streams in from it
    edge = torch.zeros(5, 6, dtype=torch.bool)
    edge[0, :] = True  # a wall on the lowest row must not create links on the highest row through the wrap
    assert not bool(bounce_back_links(edge)[:, -1].any())


def test_ramp_is_smooth_and_reaches_one():
    assert ramp_factor(0, 100) == 0.0
    assert ramp_factor(50, 100) == pytest.approx(0.5)
    assert ramp_factor(100, 100) == 1.0
    assert ramp_factor(7, 0) == 1.0


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_empty_stream_stays_uniform_and_feels_no_force(kernel):
    problem = uniform_stream(torch.zeros(1, 12, 24, dtype=torch.bool))
    result = simulate(problem, 200, average_from=100, kernel=kernel, return_fields=True)
    assert result.failures == [None]
    assert result.force.abs().max().item() < 1e-5
    assert result.cell_updates == 200 * 12 * 24
    rho, ux, uy = result.fields[0]
    torch.testing.assert_close(rho, torch.ones_like(rho), atol=1e-5, rtol=0)
    torch.testing.assert_close(ux, torch.full_like(ux, 0.05), atol=1e-5, rtol=0)
    assert uy.abs().max() < 1e-5


def test_cylinder_drag_is_positive_and_lift_vanishes_by_symmetry():
    ny, nx = 32, 80
    yy, xx = torch.meshgrid(torch.arange(ny) + 0.5, torch.arange(nx) + 0.5, indexing="ij")
    body = (((xx - 24) ** 2 + (yy - ny / 2) ** 2) <= 4.0**2).unsqueeze(0)
    result = simulate(uniform_stream(body), 1500, ramp_steps=200, average_from=1000, force_every=5)
    drag, lift = result.force[0].tolist()
    assert drag > 0
    assert abs(lift) < 0.02 * drag
    # At Re = U D / ν = 0.05 · 8 / 0.02 = 20 an unconfined cylinder has C_D ≈ 2; the periodic box blocks a quarter.
    drag_coefficient = 2 * drag / (0.05**2 * 8)
    assert 1.5 < drag_coefficient < 5.0


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_divergence_is_reported_per_element_without_spoiling_the_batch(kernel):
    ny, nx = 24, 48
    body = torch.zeros(2, ny, nx, dtype=torch.bool)
    body[1, 8:16, 14:16] = True  # element 1: a plate hit impulsively at Re ≈ 10⁵ with no eddy viscosity
    problem = uniform_stream(body, speed=0.3, viscosity=1e-5, smagorinsky=0.0, bulk_relaxation=1.9)
    result = simulate(problem, 400, check_every=50, kernel=kernel)
    assert result.failures[0] is None
    assert result.failures[1] is not None and "diverged" in result.failures[1]
    assert result.diverged_at.tolist()[0] == -1 and 0 < result.diverged_at.tolist()[1] <= 400
    assert torch.isfinite(result.force[0]).all() and result.force[0].abs().max() < 1e-4
    assert torch.isnan(result.force[1]).all()


def test_problem_shapes_are_checked():
    body = torch.zeros(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="sponge"):
        FlowProblem(body=body, walls=torch.zeros(8, 8, dtype=torch.bool), far_field=torch.zeros(2, 8, 8),
                    sponge=torch.zeros(8, 9), viscosity=0.1)
    with pytest.raises(ValueError, match="viscosity"):
        FlowProblem(body=body, walls=torch.zeros(8, 8, dtype=torch.bool), far_field=torch.zeros(2, 8, 8),
                    sponge=torch.zeros(8, 8), viscosity=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    ny, nx = 32, 80
    yy, xx = torch.meshgrid(torch.arange(ny) + 0.5, torch.arange(nx) + 0.5, indexing="ij")
    body = (((xx - 24) ** 2 + (yy - ny / 2) ** 2) <= 4.0**2).unsqueeze(0)
    cpu = simulate(uniform_stream(body), 600, ramp_steps=100, device="cpu")
    gpu = simulate(uniform_stream(body), 600, ramp_steps=100, device="cuda")
    torch.testing.assert_close(gpu.force, cpu.force, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_compiled_step_matches_eager():
    ny, nx = 32, 80
    yy, xx = torch.meshgrid(torch.arange(ny) + 0.5, torch.arange(nx) + 0.5, indexing="ij")
    body = (((xx - 24) ** 2 + (yy - ny / 2) ** 2) <= 4.0**2).unsqueeze(0).repeat(2, 1, 1)
    eager = simulate(uniform_stream(body), 400, ramp_steps=100, kernel="torch")
    compiled = simulate(uniform_stream(body), 400, ramp_steps=100, compile=True, kernel="torch")
    torch.testing.assert_close(compiled.force, eager.force, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_schaefer_turek_2d1_cylinder_drag_within_five_percent(kernel):
    """Schäfer & Turek (1996), benchmark 2D-1 (Re = 20): C_D = 5.58. Stair-step bounce-back at D = 20 cells."""
    problem, force_to_drag = schaefer_turek_2d1(diameter_cells=20, u_max=0.05)
    steps = 8000
    result = simulate(problem, steps, average_from=6000, force_every=10, compile=True, kernel=kernel)
    assert result.failures == [None]
    drag = float(result.force[0, 0]) * force_to_drag
    history = result.force_history[:, 0, 0] * force_to_drag
    assert abs(float(history[-1] - history[0])) < 0.005 * drag  # steady: the window's ends agree
    assert abs(drag / SCHAEFER_TUREK_2D1_DRAG - 1) < 0.05
    assert math.isfinite(float(result.force[0, 1]))
