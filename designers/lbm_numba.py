"""The CPU kernel of the D2Q9 solver: one fused, multi-threaded numba sweep per time step.

Same physics as the torch step in :mod:`designers.lbm` (which stays the CUDA path), computed in the same order:
collision (BGK + separately relaxed stress trace + Smagorinsky), sponge relaxation towards the ramped far-field
equilibrium (solid cells have sponge 1), streaming on the periodic lattice, half-way bounce-back on the links into
solids with the moving-wall term, momentum-exchange force on the body links. What differs is only how the memory is
walked:

* one sweep per step over ``(batch, row)`` tasks, split between the cores (``prange``): each task reads the nine
  populations of its row once, collides them in registers (float32, vectorised over the row) into a small row buffer
  and writes every direction straight into its streamed place in the other lattice (two lattices ping-pong), so a
  cell update moves the minimum: 9 floats read, 9 written (72 bytes) plus a byte of solid mask;
* bounce-back is a sparse fix-up after the sweep over the precomputed links (a few hundred per body): the population
  a fluid cell should receive from a solid neighbour is the one that was just streamed *into* that neighbour, i.e.
  ``f_i(x) = f_opp(x − c_i) + ramp · 6 w_i (c_i · u_wall)``, which is exactly the torch step's
  ``where(link, post_opp + correction, roll(post_i))``;
* the force is a gather over the body links of that result, like the torch path's; the density check (every
  ``check_every`` steps) is one reduction per element.

An element that diverges is reported exactly like the torch path does and then skipped by the sweep (the torch path
freezes it at the far field; either way its force is NaN and it cannot spoil the rest of the batch).

numba's default threading layer (``workqueue``) must not be entered by two Python threads at once, and the oracle
is called from several threads (Prefect's thread runner): every launch holds :data:`_LAUNCH_LOCK`, which costs
nothing on two cores where one sweep already uses both.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import torch

from designers.lbm import OPPOSITE, VELOCITIES, WEIGHTS, FlowProblem, FlowResult, bounce_back_links, ramp_factor

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency; the torch kernel is the fallback
    numba = None

#: Bytes a cell update of this kernel moves: 9 float32 populations read and 9 written, one byte of solid mask.
BYTES_PER_CELL_UPDATE = 9 * 2 * 4 + 1

_LAUNCH_LOCK = threading.Lock()


def available() -> bool:
    """Is numba importable (the CPU kernel usable)?"""
    return numba is not None


if numba is not None:
    _F = np.float32
    _ONE, _HALF, _THREE, _THIRD = _F(1.0), _F(0.5), _F(3.0), _F(1.0 / 3.0)
    _W0, _W1, _W5 = _F(4.0 / 9.0), _F(1.0 / 9.0), _F(1.0 / 36.0)
    # w_i (|c_i|² − 2/3): the projection of the stress trace onto populations.
    _T0, _T1, _T5 = _F(4.0 / 9.0 * (0.0 - 2.0 / 3.0)), _F(1.0 / 9.0 * (1.0 - 2.0 / 3.0)), _F(1.0 / 36.0 * (2.0 - 2.0 / 3.0))
    _TWO, _TWO_TWENTYFIVE, _ONE_HALF = _F(2.0), _F(2.25), _F(1.5)

    @njit(inline="always", fastmath=True, error_model="numpy")
    def _collide(f, b, y, x, s, target, t0, t0_sq, c_smag, w_bulk):  # pragma: no cover - compiled
        """Post-collision populations of cell ``(b, y, x)`` after the sponge (strength ``s``) pulled them towards
        ``target``: the torch step's collision, term by term."""
        f0 = f[b, 0, y, x]
        f1 = f[b, 1, y, x]
        f2 = f[b, 2, y, x]
        f3 = f[b, 3, y, x]
        f4 = f[b, 4, y, x]
        f5 = f[b, 5, y, x]
        f6 = f[b, 6, y, x]
        f7 = f[b, 7, y, x]
        f8 = f[b, 8, y, x]
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
        axis, diag = _T1 * trace, _T5 * trace
        p0 = f0 - omega * (f0 - _W0 * rho * base) - _T0 * trace
        eu = _THREE * ux
        p1 = f1 - omega * (f1 - _W1 * rho * (base + eu + _HALF * eu * eu)) - axis
        eu = _THREE * uy
        p2 = f2 - omega * (f2 - _W1 * rho * (base + eu + _HALF * eu * eu)) - axis
        eu = -_THREE * ux
        p3 = f3 - omega * (f3 - _W1 * rho * (base + eu + _HALF * eu * eu)) - axis
        eu = -_THREE * uy
        p4 = f4 - omega * (f4 - _W1 * rho * (base + eu + _HALF * eu * eu)) - axis
        eu = _THREE * (ux + uy)
        p5 = f5 - omega * (f5 - _W5 * rho * (base + eu + _HALF * eu * eu)) - diag
        eu = _THREE * (uy - ux)
        p6 = f6 - omega * (f6 - _W5 * rho * (base + eu + _HALF * eu * eu)) - diag
        eu = -_THREE * (ux + uy)
        p7 = f7 - omega * (f7 - _W5 * rho * (base + eu + _HALF * eu * eu)) - diag
        eu = _THREE * (ux - uy)
        p8 = f8 - omega * (f8 - _W5 * rho * (base + eu + _HALF * eu * eu)) - diag
        # Sponge (and solid cells, whose strength is 1): relax towards the far-field equilibrium at ρ = 1.
        return (
            p0 + s * (target[0, y, x] - p0), p1 + s * (target[1, y, x] - p1), p2 + s * (target[2, y, x] - p2),
            p3 + s * (target[3, y, x] - p3), p4 + s * (target[4, y, x] - p4), p5 + s * (target[5, y, x] - p5),
            p6 + s * (target[6, y, x] - p6), p7 + s * (target[7, y, x] - p7), p8 + s * (target[8, y, x] - p8),
        )

    @njit(inline="always")
    def _store(out, b, y, up, down, x, left, right, p):  # pragma: no cover - compiled
        """Stream one cell's post-collision populations: ``out[i, y + cy, x + cx] = p[i]`` (periodic)."""
        out[b, 0, y, x] = p[0]
        out[b, 1, y, right] = p[1]
        out[b, 2, up, x] = p[2]
        out[b, 3, y, left] = p[3]
        out[b, 4, down, x] = p[4]
        out[b, 5, up, right] = p[5]
        out[b, 6, up, left] = p[6]
        out[b, 7, down, left] = p[7]
        out[b, 8, down, right] = p[8]

    @njit(parallel=True, fastmath=True, cache=True, boundscheck=False, error_model="numpy")
    def _sweep(f, out, solid, sponge, target, alive, tau0, smag, omega_bulk):  # pragma: no cover - compiled
        """Collide every cell of ``f`` (B, 9, ny, nx) and stream into ``out`` (periodic), without bounce-back.

        One task per (element, row); the interior columns form a branch-free loop that LLVM vectorises, the two
        edge columns (which wrap) are done apart. Rows never collide between tasks: for each direction,
        ``y → y + cy`` is one-to-one."""
        batch, _, ny, nx = f.shape
        t0 = _F(tau0)
        t0_sq = t0 * t0
        c_smag = _F(smag)
        w_bulk = _F(omega_bulk)
        for task in prange(batch * ny):
            b = task // ny
            y = task - b * ny
            if alive[b] == 0:
                continue
            up = y + 1 if y + 1 < ny else 0
            down = y - 1 if y > 0 else ny - 1
            for x in range(1, nx - 1):
                s = _ONE if solid[b, y, x] else sponge[y, x]
                p = _collide(f, b, y, x, s, target, t0, t0_sq, c_smag, w_bulk)
                _store(out, b, y, up, down, x, x - 1, x + 1, p)
            for x in (0, nx - 1):
                s = _ONE if solid[b, y, x] else sponge[y, x]
                p = _collide(f, b, y, x, s, target, t0, t0_sq, c_smag, w_bulk)
                _store(out, b, y, up, down, x, x - 1 if x > 0 else nx - 1, x + 1 if x + 1 < nx else 0, p)

    @njit(cache=True, boundscheck=False)
    def _bounce_back(flat, link_batch, link_dst, link_src, link_correction, alive, ramp):  # pragma: no cover
        """``flat[dst] = flat[src] + ramp · correction`` on every link of a live element (src: the solid cell)."""
        r = _F(ramp)
        for k in range(link_dst.shape[0]):
            if alive[link_batch[k]] != 0:
                flat[link_dst[k]] = flat[link_src[k]] + r * link_correction[k]

    @njit(cache=True, boundscheck=False)
    def _force(flat, batch, link_batch, link_dst, weight_x, weight_y):  # pragma: no cover - compiled
        """Momentum exchange on the body links: ``F = −2 Σ c_i f_i`` (weights hold ``−2 c_i``)."""
        force = np.zeros((batch, 2), dtype=np.float64)
        for k in range(link_dst.shape[0]):
            value = flat[link_dst[k]]
            force[link_batch[k], 0] += weight_x[k] * value
            force[link_batch[k], 1] += weight_y[k] * value
        return force

    @njit(parallel=True, cache=True, boundscheck=False)
    def _density_check(f, alive):  # pragma: no cover - compiled
        """Per element: are all densities finite, and the largest ``|ρ − 1|``."""
        batch, _, ny, nx = f.shape
        finite = np.ones(batch, dtype=np.uint8)
        deviation = np.zeros(batch, dtype=np.float64)
        for b in prange(batch):
            if alive[b] == 0:
                continue
            worst = 0.0
            ok = True
            for y in range(ny):
                for x in range(nx):
                    rho = 0.0
                    for i in range(9):
                        rho += f[b, i, y, x]
                    if not math.isfinite(rho):
                        ok = False
                    elif abs(rho - 1.0) > worst:
                        worst = abs(rho - 1.0)
            finite[b] = 1 if ok else 0
            deviation[b] = worst if ok else math.inf
        return finite, deviation


def _links(problem: FlowProblem) -> tuple[np.ndarray, ...]:
    """Flat indices of every bounce-back link (destination fluid population, source population in the solid
    neighbour), the moving-wall correction per link, and the subset on the body with its force weights."""
    body = problem.body.cpu()
    walls = problem.walls.cpu()
    batch, ny, nx = body.shape
    solid = body | walls.unsqueeze(0)
    links = bounce_back_links(solid).numpy()  # (B, 9, ny, nx)
    wall_links = bounce_back_links(walls).numpy()  # (9, ny, nx)
    body_links = bounce_back_links(body).numpy()
    b, i, y, x = np.nonzero(links)
    cx = np.array([c[0] for c in VELOCITIES])
    cy = np.array([c[1] for c in VELOCITIES])
    opposite = np.array(OPPOSITE)
    weights = np.array(WEIGHTS)
    dst = ((b * 9 + i) * ny + y) * nx + x
    src = ((b * 9 + opposite[i]) * ny + (y - cy[i])) * nx + (x - cx[i])
    correction = np.where(wall_links[i, y, x], 6.0 * weights[i] * cx[i] * problem.wall_velocity, 0.0)
    bb, bi, by, bx = np.nonzero(body_links)
    body_dst = ((bb * 9 + bi) * ny + by) * nx + bx
    return (
        b.astype(np.int64), dst.astype(np.int64), src.astype(np.int64), correction.astype(np.float32),
        bb.astype(np.int64), body_dst.astype(np.int64), (-2.0 * cx[bi]).astype(np.float64),
        (-2.0 * cy[bi]).astype(np.float64),
    )


def simulate_numba(
    problem: FlowProblem,
    steps: int,
    ramp_steps: int = 0,
    average_from: int | None = None,
    force_every: int = 1,
    check_every: int = 200,
    max_density_deviation: float = 0.5,
    threads: int | None = None,
) -> FlowResult:
    """:func:`designers.lbm.simulate` on the CPU with the fused numba kernel (float32); same arguments, same result.

    ``threads``: numba threads for this call (``None``: numba's default, all cores); set for the calling thread
    only and restored after.
    """
    if numba is None:
        raise RuntimeError("numba is not installed: use kernel='torch'")
    average_from = steps // 2 if average_from is None else average_from
    if not 0 <= average_from < steps:
        raise ValueError(f"average_from must lie in [0, steps={steps}), got {average_from}")
    start = time.perf_counter()
    batch, ny, nx = problem.body.shape
    body = problem.body.cpu().numpy()
    walls = problem.walls.cpu().numpy()
    solid = np.ascontiguousarray(body | walls[None]).astype(np.uint8)
    sponge = np.ascontiguousarray(problem.sponge.cpu().numpy(), dtype=np.float32)
    cx = np.array([c[0] for c in VELOCITIES], dtype=np.float32).reshape(9, 1, 1)
    cy = np.array([c[1] for c in VELOCITIES], dtype=np.float32).reshape(9, 1, 1)
    w = np.array(WEIGHTS, dtype=np.float32).reshape(9, 1, 1)
    ux_ff = problem.far_field[0].cpu().numpy().astype(np.float32)
    uy_ff = problem.far_field[1].cpu().numpy().astype(np.float32)
    cu = cx * ux_ff + cy * uy_ff
    feq_linear = (w * 3 * cu).astype(np.float32)
    feq_quadratic = (w * (np.float32(4.5) * cu * cu - np.float32(1.5) * (ux_ff * ux_ff + uy_ff * uy_ff))).astype(np.float32)

    def target(ramp: float) -> np.ndarray:
        r = np.float32(ramp)
        return np.ascontiguousarray(w + r * feq_linear + (r * r) * feq_quadratic, dtype=np.float32)

    (link_batch, link_dst, link_src, link_correction,
     body_batch, body_dst, weight_x, weight_y) = _links(problem)

    # Initial state: the far-field equilibrium at ρ = 1 scaled by the ramp at step 0, in every element.
    r0 = ramp_factor(0, ramp_steps)
    f = np.empty((batch, 9, ny, nx), dtype=np.float32)
    f[:] = target(r0)[None]
    out = np.empty_like(f)
    alive = np.ones(batch, dtype=np.uint8)
    diverged_at = torch.full((batch,), -1, dtype=torch.long)
    failures: list[str | None] = [None] * batch
    history = np.empty((len(range(average_from, steps, force_every)), batch, 2), dtype=np.float32)
    tau0 = 3.0 * problem.viscosity + 0.5
    smag = 18.0 * math.sqrt(2.0) * problem.smagorinsky**2
    omega_bulk = float(problem.bulk_relaxation)

    previous_threads = numba.get_num_threads()
    if threads:
        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
    try:
        current_target, current_ramp = target(r0), r0
        for n in range(steps):
            ramp = ramp_factor(n, ramp_steps)
            if ramp != current_ramp:
                current_target, current_ramp = target(ramp), ramp
            with _LAUNCH_LOCK:
                _sweep(f, out, solid, sponge, current_target, alive, tau0, smag, omega_bulk)
            flat = out.reshape(-1)
            _bounce_back(flat, link_batch, link_dst, link_src, link_correction, alive, ramp)
            f, out = out, f
            if n >= average_from and (n - average_from) % force_every == 0:
                force = _force(flat, batch, body_batch, body_dst, weight_x, weight_y)
                force[alive == 0] = np.nan
                history[(n - average_from) // force_every] = force
            if (n + 1) % check_every == 0 or n + 1 == steps:
                with _LAUNCH_LOCK:
                    finite, deviation = _density_check(f, alive)
                bad = (alive != 0) & ((finite == 0) | (deviation > max_density_deviation))
                for b in np.nonzero(bad)[0].tolist():
                    diverged_at[b] = n + 1
                    failures[b] = (
                        f"flow solver diverged: non-finite density by step {n + 1}"
                        if not finite[b]
                        else f"flow solver diverged: density off by {float(deviation[b]):.2f} at step {n + 1}"
                    )
                    alive[b] = 0
    finally:
        if threads:
            numba.set_num_threads(previous_threads)

    history_t = torch.from_numpy(history)
    mean_force = history_t.mean(0) if len(history) else torch.full((batch, 2), math.nan)
    alive_t = torch.from_numpy(alive.astype(bool))
    mean_force = torch.where(alive_t.view(-1, 1), mean_force, torch.full_like(mean_force, math.nan))
    return FlowResult(
        force=mean_force,
        force_history=history_t,
        diverged_at=diverged_at,
        failures=failures,
        steps=steps,
        seconds=time.perf_counter() - start,
        cell_updates=steps * batch * ny * nx,
    )
