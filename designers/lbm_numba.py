"""The CPU kernel of the D2Q9 solver: a fused numba sweep, one whole run per batch element, elements on threads.

Same physics as the torch step in :mod:`designers.lbm` (which stays the CUDA path), computed in the same order and
float32: collision (BGK + separately relaxed stress trace + Smagorinsky), sponge relaxation towards the ramped
far-field equilibrium (solid cells have sponge 1), streaming on the periodic lattice, half-way bounce-back on the
links into solids with the moving-wall term, momentum-exchange force on the body links, the start-up ramp, the
density check every ``check_every`` steps. What differs is only how the memory is walked:

* one sweep per step: each row's nine populations are read once, collided in registers (vectorised over the row by
  LLVM: the interior columns are a branch-free loop, the two wrapping edge columns are done apart) and written
  straight into their streamed places in the other lattice (two lattices ping-pong); a cell update moves the minimum,
  9 floats read and 9 written (72 bytes), plus one byte of solid mask;
* bounce-back is a sparse fix-up after the sweep over the precomputed links (a few hundred per body): the population
  a fluid cell should receive from a solid neighbour is the one just streamed *into* that neighbour, so
  ``f_i(x) = f_opp(x − c_i) + ramp · 6 w_i (c_i · u_wall)`` — the torch step's
  ``where(link, post_opp + correction, roll(post_i))``;
* the whole time loop of one batch element runs inside one compiled call that releases the GIL; the elements of a
  batch are spread over ``threads`` Python threads. Elements are independent, so no thread ever waits for another
  between steps: on a shared machine (the load here is often 4–8 on 2 cores) a per-step barrier made two threads
  ~10× slower than one, for this kernel and for torch's OpenMP alike. One element's two lattices (2 × 9 × 49 × 98
  floats ≈ 0.35 MB on the coarse car lattice) stay in the core's caches for the whole run, so the sweep is
  compute-bound (~130 MLUPS per core here), not bound by memory bandwidth.

An element that diverges is reported exactly as by the torch path (step and reason) and its run stops there; its
force is NaN (the torch path freezes it at the far field instead; either way it cannot spoil the rest of the batch).
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from designers.lbm import OPPOSITE, VELOCITIES, WEIGHTS, FlowProblem, FlowResult, ramp_factor

try:
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; the torch kernel is the fallback
    numba = None

#: Bytes a cell update of this kernel moves at least: 9 float32 populations read and 9 written, a byte of solid mask.
BYTES_PER_CELL_UPDATE = 9 * 2 * 4 + 1


def available() -> bool:
    """Is numba importable (the CPU kernel usable)?"""
    return numba is not None


def default_threads() -> int:
    """Threads when none are asked for: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


if numba is not None:
    _F = np.float32
    _ONE, _HALF, _THREE, _THIRD = _F(1.0), _F(0.5), _F(3.0), _F(1.0 / 3.0)
    _W0, _W1, _W5 = _F(4.0 / 9.0), _F(1.0 / 9.0), _F(1.0 / 36.0)
    # w_i (|c_i|² − 2/3): the projection of the stress trace onto populations.
    _T0, _T1, _T5 = _F(4.0 / 9.0 * (0.0 - 2.0 / 3.0)), _F(1.0 / 9.0 * (1.0 - 2.0 / 3.0)), _F(1.0 / 36.0 * (2.0 - 2.0 / 3.0))
    _TWO, _TWO_TWENTYFIVE, _ONE_HALF = _F(2.0), _F(2.25), _F(1.5)
    _WEIGHTS = np.array(WEIGHTS, dtype=np.float32)

    try:
        from numba.core.compiler import Compiler

        class _NoAliasCompiler(Compiler):
            """numba's pipeline with its ``noalias`` flag set: array arguments are declared not to overlap (as numba
            itself does for the bodies of ``prange`` loops). Without it LLVM cannot prove that the sweep's nine
            stores into one lattice miss the loads from the other, gives up vectorising, and the sweep runs at
            25 instead of 140 MLUPS per core. True for :func:`_sweep`: its two lattices are distinct buffers and
            the other arrays are only read."""

            def define_pipelines(self):  # noqa: D102
                self.state.flags.noalias = True
                return super().define_pipelines()

        _SWEEP_OPTIONS: dict = {"pipeline_class": _NoAliasCompiler}
    except (ImportError, AttributeError):  # pragma: no cover - a numba without this hook: correct, just slower
        _SWEEP_OPTIONS = {}
    _CX = np.array([c[0] for c in VELOCITIES], dtype=np.float64)
    _CY = np.array([c[1] for c in VELOCITIES], dtype=np.float64)

    @njit(inline="always", fastmath=True, error_model="numpy")
    def _collide(f, y, x, s, target, t0, t0_sq, c_smag, w_bulk):  # pragma: no cover - compiled
        """Post-collision populations of cell ``(y, x)`` after the sponge (strength ``s``) pulled them towards
        ``target``: the torch step's collision, term by term."""
        f0 = f[0, y, x]
        f1 = f[1, y, x]
        f2 = f[2, y, x]
        f3 = f[3, y, x]
        f4 = f[4, y, x]
        f5 = f[5, y, x]
        f6 = f[6, y, x]
        f7 = f[7, y, x]
        f8 = f[8, y, x]
        rho = f0 + f1 + f2 + f3 + f4 + f5 + f6 + f7 + f8
        ux = (f1 - f3 + f5 - f6 - f7 + f8) / rho
        uy = (f2 - f4 + f5 + f6 - f7 - f8) / rho
        diagonal = f5 + f6 + f7 + f8
        # Non-equilibrium stress Π − Π_eq, with Π_eq = ρ (u u + I/3).
        pxx = f1 + f3 + diagonal - rho * (ux * ux + _THIRD)
        pyy = f2 + f4 + diagonal - rho * (uy * uy + _THIRD)
        pxy = f5 - f6 + f7 - f8 - rho * ux * uy
        # Smagorinsky (Hou et al. 1996) and the separately relaxed stress trace (bulk viscosity).
        q = math.sqrt(pxx * pxx + pyy * pyy + _TWO * pxy * pxy)
        omega = _TWO / (t0 + math.sqrt(t0_sq + c_smag * q / rho))
        trace = _TWO_TWENTYFIVE * (pxx + pyy) * (w_bulk - omega)
        base = _ONE - _ONE_HALF * (ux * ux + uy * uy)
        # p_i = f_i − ω (f_i − feq_i) − T_i·trace, then the sponge: p_i + s (target_i − p_i). Expanded as
        # keep·f_i + relax_c·poly_i − bulk_c + s·target_i (per-cell factors once, three multiply-adds per direction;
        # poly = 1 − 1.5 u² ± e + e²/2 shared by opposite directions): the same numbers to float32 rounding.
        keep = (_ONE - s) * (_ONE - omega)
        relaxed = (_ONE - s) * omega * rho
        relax0, relax1, relax5 = relaxed * _W0, relaxed * _W1, relaxed * _W5
        bulk0 = (_ONE - s) * _T0 * trace
        bulk1 = (_ONE - s) * _T1 * trace
        bulk5 = (_ONE - s) * _T5 * trace
        p0 = keep * f0 + relax0 * base - bulk0 + s * target[0, y, x]
        e = _THREE * ux
        even = base + _HALF * e * e
        p1 = keep * f1 + relax1 * (even + e) - bulk1 + s * target[1, y, x]
        p3 = keep * f3 + relax1 * (even - e) - bulk1 + s * target[3, y, x]
        e = _THREE * uy
        even = base + _HALF * e * e
        p2 = keep * f2 + relax1 * (even + e) - bulk1 + s * target[2, y, x]
        p4 = keep * f4 + relax1 * (even - e) - bulk1 + s * target[4, y, x]
        e = _THREE * (ux + uy)
        even = base + _HALF * e * e
        p5 = keep * f5 + relax5 * (even + e) - bulk5 + s * target[5, y, x]
        p7 = keep * f7 + relax5 * (even - e) - bulk5 + s * target[7, y, x]
        e = _THREE * (uy - ux)
        even = base + _HALF * e * e
        p6 = keep * f6 + relax5 * (even + e) - bulk5 + s * target[6, y, x]
        p8 = keep * f8 + relax5 * (even - e) - bulk5 + s * target[8, y, x]
        return p0, p1, p2, p3, p4, p5, p6, p7, p8

    @njit(inline="always")
    def _store(out, y, up, down, x, left, right, p):  # pragma: no cover - compiled
        """Stream one cell's post-collision populations: ``out[i, y + cy, x + cx] = p[i]`` (periodic)."""
        out[0, y, x] = p[0]
        out[1, y, right] = p[1]
        out[2, up, x] = p[2]
        out[3, y, left] = p[3]
        out[4, down, x] = p[4]
        out[5, up, right] = p[5]
        out[6, up, left] = p[6]
        out[7, down, left] = p[7]
        out[8, down, right] = p[8]

    @njit(fastmath=True, cache=True, boundscheck=False, error_model="numpy", **_SWEEP_OPTIONS)
    def _sweep(f, out, solid, sponge, target, t0, t0_sq, c_smag, w_bulk):  # pragma: no cover - compiled
        """Collide every cell of one element's ``f`` (9, ny, nx) and stream into ``out`` (periodic), no
        bounce-back yet."""
        _, ny, nx = f.shape
        for y in range(ny):
            up = y + 1 if y + 1 < ny else 0
            down = y - 1 if y > 0 else ny - 1
            for x in range(1, nx - 1):
                s = _ONE if solid[y, x] else sponge[y, x]
                p = _collide(f, y, x, s, target, t0, t0_sq, c_smag, w_bulk)
                _store(out, y, up, down, x, x - 1, x + 1, p)
            for x in (0, nx - 1):
                s = _ONE if solid[y, x] else sponge[y, x]
                p = _collide(f, y, x, s, target, t0, t0_sq, c_smag, w_bulk)
                _store(out, y, up, down, x, x - 1 if x > 0 else nx - 1, x + 1 if x + 1 < nx else 0, p)

    @njit(nogil=True, fastmath=True, cache=True, boundscheck=False, error_model="numpy")
    def _run(f, out, solid, sponge, linear, quadratic, ramps, tau0, smag, omega_bulk, links, correction,
             body_links, average_from, force_every, check_every, max_density_deviation, history):  # pragma: no cover
        """The whole run of one batch element; returns ``(steps run, reason, deviation)``.

        ``f``/``out``: the two lattices (9, ny, nx), ``f`` holding the initial state; ``links``: (k, 6) int32 rows
        ``i, y, x, opp, y − cy, x − cx`` (destination population in the fluid, source in the solid neighbour),
        ``correction``: the moving-wall term per link; ``body_links``: (m, 3) rows ``i, y, x`` of the links into
        the body; ``history``: (samples, 2) the force samples (left untouched after a divergence). ``reason``: 0 ok,
        1 non-finite density, 2 density off by more than ``max_density_deviation`` (the largest deviation returned).
        The final state is in ``f`` if the steps run are even, else in ``out``.
        """
        _, ny, nx = f.shape
        steps = ramps.shape[0]
        t0 = _F(tau0)
        t0_sq = t0 * t0
        c_smag = _F(smag)
        w_bulk = _F(omega_bulk)
        target = np.empty((9, ny, nx), dtype=np.float32)
        a, c = f, out
        for n in range(steps):
            r = ramps[n]
            if n == 0 or r != ramps[n - 1]:
                r2 = r * r
                for i in range(9):
                    w = _WEIGHTS[i]
                    for y in range(ny):
                        for x in range(nx):
                            target[i, y, x] = w + r * linear[i, y, x] + r2 * quadratic[i, y, x]
            _sweep(a, c, solid, sponge, target, t0, t0_sq, c_smag, w_bulk)
            for k in range(links.shape[0]):
                c[links[k, 0], links[k, 1], links[k, 2]] = (
                    c[links[k, 3], links[k, 4], links[k, 5]] + r * correction[k]
                )
            a, c = c, a
            if n >= average_from and (n - average_from) % force_every == 0:
                fx = 0.0
                fy = 0.0
                for k in range(body_links.shape[0]):
                    i = body_links[k, 0]
                    value = a[i, body_links[k, 1], body_links[k, 2]]
                    # momentum exchange on a body at rest: F = −2 Σ c_i f_i over its links
                    fx -= 2.0 * _CX[i] * value
                    fy -= 2.0 * _CY[i] * value
                history[(n - average_from) // force_every, 0] = fx
                history[(n - average_from) // force_every, 1] = fy
            if (n + 1) % check_every == 0 or n + 1 == steps:
                worst = 0.0
                for y in range(ny):
                    for x in range(nx):
                        rho = 0.0
                        for i in range(9):
                            rho += a[i, y, x]
                        if not math.isfinite(rho):
                            return n + 1, 1, math.inf
                        worst = max(worst, abs(rho - 1.0))
                if worst > max_density_deviation:
                    return n + 1, 2, worst
        return steps, 0, 0.0


def _bounce_back_links(solid: np.ndarray) -> np.ndarray:
    """:func:`designers.lbm.bounce_back_links` in numpy (no torch op here: on a loaded machine torch's OpenMP
    threads made these few small ops cost 0.8 s)."""
    fluid = ~solid
    ny, nx = solid.shape[-2:]
    links = np.zeros(solid.shape[:-2] + (9, ny, nx), dtype=bool)
    for i, (dx, dy) in enumerate(VELOCITIES):
        shifted = np.zeros_like(solid)  # shifted[y, x] = solid[y − dy, x − dx], False outside (no wrap)
        shifted[..., max(dy, 0): ny + min(dy, 0), max(dx, 0): nx + min(dx, 0)] = (
            solid[..., max(-dy, 0): ny + min(-dy, 0), max(-dx, 0): nx + min(-dx, 0)]
        )
        links[..., i, :, :] = fluid & shifted
    return links


def _links(body: np.ndarray, walls: np.ndarray, wall_velocity: float) -> tuple[list[np.ndarray], ...]:
    """Per element: the bounce-back links (rows ``i, y, x, opp, y − cy, x − cx``: destination fluid population and
    the source population in the solid neighbour), their moving-wall correction ``6 w_i c_ix u_wall`` (links into
    walls only), and the links into the body (rows ``i, y, x``) for the force."""
    links = _bounce_back_links(body | walls[None])  # (B, 9, ny, nx)
    wall_links = _bounce_back_links(walls)  # (9, ny, nx)
    body_links = _bounce_back_links(body)
    cx = np.array([c[0] for c in VELOCITIES])
    cy = np.array([c[1] for c in VELOCITIES])
    opposite, weights = np.array(OPPOSITE), np.array(WEIGHTS)
    all_links, corrections, all_body = [], [], []
    for b in range(links.shape[0]):
        i, y, x = np.nonzero(links[b])
        all_links.append(np.stack([i, y, x, opposite[i], y - cy[i], x - cx[i]], axis=1).astype(np.int32))
        corrections.append(
            np.where(wall_links[i, y, x], 6.0 * weights[i] * cx[i] * wall_velocity, 0.0).astype(np.float32)
        )
        all_body.append(np.stack(np.nonzero(body_links[b]), axis=1).astype(np.int32).reshape(-1, 3))
    return all_links, corrections, all_body


def simulate_numba(
    problem: FlowProblem,
    steps: int,
    ramp_steps: int = 0,
    average_from: int | None = None,
    force_every: int = 1,
    check_every: int = 200,
    max_density_deviation: float = 0.5,
    threads: int | None = None,
    return_fields: bool = False,
) -> FlowResult:
    """:func:`designers.lbm.simulate` on the CPU with the fused numba kernel (float32); same arguments, same result.

    ``threads``: how many batch elements run at once (``None``: one per core this process may use).
    ``return_fields``: also return the final density and velocity (``FlowResult.fields``).
    """
    if numba is None:
        raise RuntimeError("numba is not installed: use kernel='torch'")
    average_from = steps // 2 if average_from is None else average_from
    if not 0 <= average_from < steps:
        raise ValueError(f"average_from must lie in [0, steps={steps}), got {average_from}")
    start = time.perf_counter()
    batch, ny, nx = problem.body.shape
    body, walls = problem.body.cpu().numpy(), problem.walls.cpu().numpy()
    solid = (body | walls[None]).astype(np.uint8)
    sponge = np.ascontiguousarray(problem.sponge.cpu().numpy(), dtype=np.float32)
    cx = np.array([c[0] for c in VELOCITIES], dtype=np.float32).reshape(9, 1, 1)
    cy = np.array([c[1] for c in VELOCITIES], dtype=np.float32).reshape(9, 1, 1)
    w = np.array(WEIGHTS, dtype=np.float32).reshape(9, 1, 1)
    ux_ff = problem.far_field[0].cpu().numpy().astype(np.float32)
    uy_ff = problem.far_field[1].cpu().numpy().astype(np.float32)
    # Far-field equilibrium at ρ = 1 as a polynomial in the ramp r: feq = w + r·linear + r²·quadratic.
    cu = cx * ux_ff + cy * uy_ff
    linear = np.ascontiguousarray(w * 3 * cu, dtype=np.float32)
    quadratic = np.ascontiguousarray(
        w * (np.float32(4.5) * cu * cu - np.float32(1.5) * (ux_ff * ux_ff + uy_ff * uy_ff)), dtype=np.float32
    )
    ramps = np.array([ramp_factor(n, ramp_steps) for n in range(steps)], dtype=np.float32)
    links, corrections, body_links = _links(body, walls, problem.wall_velocity)
    r0 = ramps[0] if steps else np.float32(ramp_factor(0, ramp_steps))
    initial = w + r0 * linear + (r0 * r0) * quadratic
    f = np.empty((batch, 9, ny, nx), dtype=np.float32)
    f[:] = initial[None]
    out = np.empty_like(f)
    samples = len(range(average_from, steps, force_every))
    history = np.full((samples, batch, 2), np.nan, dtype=np.float32)
    element_history = np.full((batch, samples, 2), np.nan, dtype=np.float64)
    tau0 = 3.0 * problem.viscosity + 0.5
    smag = 18.0 * math.sqrt(2.0) * problem.smagorinsky**2
    omega_bulk = float(problem.bulk_relaxation)

    def run(b: int) -> tuple[int, int, float]:
        return _run(
            f[b], out[b], solid[b], sponge, linear, quadratic, ramps, tau0, smag, omega_bulk, links[b],
            corrections[b], body_links[b], average_from, force_every, check_every, max_density_deviation,
            element_history[b],
        )

    workers = min(batch, threads or default_threads())
    if workers <= 1:
        outcomes = [run(b) for b in range(batch)]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lbm") as pool:
            outcomes = list(pool.map(run, range(batch)))

    diverged_at = torch.full((batch,), -1, dtype=torch.long)
    failures: list[str | None] = [None] * batch
    fields = np.full((batch, 3, ny, nx), np.nan, dtype=np.float32) if return_fields else None
    for b, (steps_run, reason, deviation) in enumerate(outcomes):
        history[:, b] = element_history[b]
        if reason:
            diverged_at[b] = steps_run
            failures[b] = (
                f"flow solver diverged: non-finite density by step {steps_run}"
                if reason == 1
                else f"flow solver diverged: density off by {deviation:.2f} at step {steps_run}"
            )
        elif fields is not None:
            final = f[b] if steps_run % 2 == 0 else out[b]
            rho = final.sum(0)
            fields[b, 0] = rho
            fields[b, 1] = (final * cx).sum(0) / rho
            fields[b, 2] = (final * cy).sum(0) / rho
    history_t = torch.from_numpy(history)
    mean_force = history_t.mean(0) if samples else torch.full((batch, 2), math.nan)
    mean_force = torch.where((diverged_at < 0).view(-1, 1), mean_force, torch.full_like(mean_force, math.nan))
    return FlowResult(
        force=mean_force,
        force_history=history_t,
        diverged_at=diverged_at,
        failures=failures,
        steps=steps,
        seconds=time.perf_counter() - start,
        cell_updates=steps * batch * ny * nx,
        fields=torch.from_numpy(fields) if fields is not None else None,
    )
