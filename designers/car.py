"""Car blueprints: a parametric side profile, scored by a 2-D lattice-Boltzmann drag and a power balance.

A blueprint is a length, a width, a ride height and the heights of the body's upper surface above its flat
underbody at nine equally spaced stations from nose (station 0) to tail (station 8); the profile between stations is
a monotone cubic (PCHIP), so it never overshoots the station values. Engine power is fixed by a class rule (a
constructor argument); mass follows from the body and the powertrain. The objective is the top speed ``v`` that
solves the power balance ``P·η = (½ ρ C_D A v² + C_rr m g)·v``, with ``C_D`` from a 2-D flow simulation of the
side profile over a moving ground (:mod:`designers.lbm`).

A 2-D flow at a few hundred Reynolds is a model of a car, not a wind tunnel: the drag coefficient here is a ranking
signal for side profiles (an extruded body has no flow around its sides, and real cars run at Re ≈ 10⁷), and the
top speed inherits that caveat. Say so wherever a speed is shown.

Constraints (all linear in the parameters, so :meth:`CarDesigner.project` can enforce them exactly):

* box bounds of every parameter: length and width limits, the minimum ground clearance (lower bound of the ride
  height), the range of each station height;
* the cabin box (stations 2–6, i.e. 25–75 % of the length, ``cabin_roof_m`` above the underbody) lies inside the
  profile: because PCHIP does not overshoot, that is ``heights[k] ≥ cabin_roof_m`` at those stations;
* maximum overall height: ``ride_height + heights[k] ≤ max_height_m``;
* smoothness (bounded curvature): ``|h[k−1] − 2 h[k] + h[k+1]| ≤ max_second_difference_m``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from scipy.optimize import linprog

from designers.base import ConstraintReport, Designer, OracleResult
from designers.flow_chunks import ChunkStore, digest
from designers.lbm import FlowProblem, simulate

AIR_DENSITY = 1.225  # kg/m³
#: Blueprints per flow chunk on the numba kernel, each chunk kept on disk as it finishes (:class:`ChunkStore`).
RECOVERY_CHUNK = 8
GRAVITY = 9.81  # m/s²

STATIONS = 9
#: Stations the cabin box spans (25–75 % of the length).
CABIN_STATIONS = (2, 3, 4, 5, 6)
#: Tolerance of the constraint checks: blueprints are written to 0.1 mm, checks allow 0.5 mm.
TOLERANCE_M = 5e-4

PARAMETER_NAMES: tuple[str, ...] = ("length_m", "width_m", "ride_height_m") + tuple(
    f"heights_m[{k}]" for k in range(STATIONS)
)


@functools.lru_cache(maxsize=1)
def _solver_modules() -> tuple[Any, ...]:
    import sys

    from designers import lbm, lbm_numba

    return lbm, lbm_numba, sys.modules[__name__]


@dataclass(frozen=True)
class Resolution:
    """Lattice resolution and run length of the flow oracle.

    Attributes:
        cells_per_metre: lattice spacing (a 4.5 m car is 4.5× this many cells long).
        flow_times: simulated time in reference heights per free-stream speed (``H_ref/U``).
        ramp_flow_times: smooth start-up of the free stream (an impulsive start blows up).
        average_flow_times: the drag is averaged over this last part of the run (after the transient).
    """

    cells_per_metre: float
    flow_times: float = 40.0
    ramp_flow_times: float = 10.0
    average_flow_times: float = 20.0


#: ``coarse``: the default for labelling and search (≈ 36 cells per 4.5 m car); ``fine`` (≈ 72 cells) for final
#: verification; ``finest`` (≈ 108 cells, minutes per blueprint on a CPU) to check the fine one now and then.
RESOLUTIONS: dict[str, Resolution] = {
    "coarse": Resolution(cells_per_metre=8.0),
    "fine": Resolution(cells_per_metre=16.0),
    "finest": Resolution(cells_per_metre=24.0),
    # Plumbing only (flow tests, Dask tests): ~25× fewer cell updates than coarse, the ranking is not validated and
    # the 3-cell underbody gap means every ride height is simulated at 0.75 m. Never for results.
    "smoke": Resolution(cells_per_metre=4.0, flow_times=12.0, ramp_flow_times=4.0, average_flow_times=4.0),
}


@dataclass(frozen=True)
class CarBlueprint:
    """One car: overall dimensions and the side profile (all in metres).

    ``heights_m[k]`` is the height of the upper surface above the flat underbody at station ``k`` (``x = k/8 ·
    length`` from the nose); the underbody sits ``ride_height_m`` above the ground; the nose and tail are vertical
    faces of height ``heights_m[0]`` and ``heights_m[8]``.
    """

    length_m: float
    width_m: float
    ride_height_m: float
    heights_m: tuple[float, ...]

    def vector(self) -> np.ndarray:
        return np.array([self.length_m, self.width_m, self.ride_height_m, *self.heights_m], dtype=np.float64)

    @classmethod
    def from_vector(cls, values: Sequence[float]) -> "CarBlueprint":
        values = [float(v) for v in values]
        return cls(values[0], values[1], values[2], tuple(values[3:]))

    def profile(self, fractions: np.ndarray) -> np.ndarray:
        """Height of the upper surface above the underbody at fractions ``0..1`` of the length (PCHIP)."""
        stations = np.linspace(0.0, 1.0, len(self.heights_m))
        return PchipInterpolator(stations, np.asarray(self.heights_m, dtype=np.float64))(fractions)


def top_speed(power_w: np.ndarray, drag_area_m2: np.ndarray, rolling_force_n: np.ndarray) -> np.ndarray:
    """Solve ``P = (½ ρ C_D A v² + F_roll)·v`` for ``v`` (the unique positive root; Cardano, Newton-polished).

    ``a v³ + b v − P = 0`` with ``a, b > 0`` is strictly increasing in ``v``, so there is exactly one real root.
    """
    power, b = np.asarray(power_w, dtype=np.float64), np.asarray(rolling_force_n, dtype=np.float64)
    a = 0.5 * AIR_DENSITY * np.asarray(drag_area_m2, dtype=np.float64)
    p, q = b / a, -power / a  # v³ + p v + q = 0
    root = np.sqrt(q * q / 4 + p**3 / 27)
    v = np.cbrt(-q / 2 + root) + np.cbrt(-q / 2 - root)
    for _ in range(3):  # Cardano loses digits when p³ ≫ q²; Newton on the monotone cubic restores them
        v = v - (a * v**3 + b * v - power) / (3 * a * v**2 + b)
    return v


class CarDesigner(Designer):
    """Car side-profile design domain (see the module docstring; the flow is 2-D, a model of a car).

    Args:
        engine_power_kw: the class rule's engine power (all designs share it).
        drivetrain_efficiency: fraction of engine power reaching the wheels (η).
        rolling_resistance: rolling-resistance coefficient ``C_rr``.
        resolution: ``"coarse"`` (default; search and labelling), ``"fine"`` (final verification), ``"finest"``
            (checks of the fine one), or a :class:`Resolution`.
        reynolds: Reynolds number on the reference height ``reference_height_m`` (2-D flows at a few hundred
            stay laminar-ish and cheap; a real car runs at ~10⁷).
        lattice_speed: free-stream speed in lattice units (≤ 0.1 keeps compressibility errors at a few %).
        max_batch: geometries simulated together; larger batches are cut into chunks of this size.
        compile: ``torch.compile`` the solver step (≈ 3–6× faster on CPU after a one-off compile of ~20–60 s per
            lattice shape; falls back to eager if compilation fails).
        device: where the flow runs (``"cpu"``, ``"cuda"``); default CUDA when available.
        threads: CPU threads of the flow (numba's for the numba kernel, torch's intra-op threads for the torch
            one), set for the duration of each simulation and restored after (``None``: all cores). On a machine
            shared with other jobs use 1: with the load at 4–8 on 2 cores, two torch threads ran the coarse oracle
            9× slower than one (spinning OpenMP threads).
        kernel: the flow kernel: ``"auto"`` (default) is the fused numba kernel on the CPU (``compile`` is then
            irrelevant: numba compiles once and caches on disk) and the torch step on CUDA; ``"torch"`` selects the
            torch step on the CPU too (see ``docs/car-oracle.md``, "Speed").
        max_change_from_seed_m: optional user constraint for :meth:`constraints`: the largest allowed change of
            any station height from the seed's (``None``: no limit, the change is still reported).
        min_ground_clearance_m, max_height_m, length_range_m, width_range_m, cabin_roof_m,
        max_second_difference_m: the feasibility rules (see the module docstring).
        objective: what is maximised: ``"top_speed"`` (default, km/h), ``"drag_area"`` (C_D·A in m² is minimised,
            so the score is −C_D·A), or ``"module.path:function[@version]"``, a callable on the oracle's components
            (a dict of arrays ``C_D``, ``C_L``, ``A``, ``m``, ``v``, ``drag_area``, ``power_residual``, one entry per
            blueprint) returning one float per blueprint, higher is better (:mod:`designers.objectives.user`).
    """

    name = "car"
    #: A constraint only :meth:`constraints` checks, and the CPU thread count: neither changes a top speed. (The
    #: feasibility rules do: the oracle refuses an infeasible blueprint.)
    settings_outside_oracle = ("max_change_from_seed_m", "threads")

    def __init__(
        self,
        engine_power_kw: float = 110.0,
        drivetrain_efficiency: float = 0.9,
        rolling_resistance: float = 0.013,
        resolution: str | Resolution = "coarse",
        reynolds: float = 400.0,
        reference_height_m: float = 1.4,
        lattice_speed: float = 0.1,
        max_batch: int = 32,
        compile: bool = True,
        device: str | torch.device | None = None,
        threads: int | None = None,
        kernel: str = "auto",
        max_change_from_seed_m: float | None = None,
        min_ground_clearance_m: float = 0.10,
        max_ride_height_m: float = 0.30,
        max_height_m: float = 1.90,
        length_range_m: tuple[float, float] = (3.8, 5.2),
        width_range_m: tuple[float, float] = (1.6, 2.0),
        station_height_range_m: tuple[float, float] = (0.15, 1.75),
        cabin_roof_m: float = 1.20,
        cabin_floor_m: float = 0.20,
        max_second_difference_m: float = 0.5,
        objective: str = "top_speed",
    ) -> None:
        from designers.objectives import ObjectiveError, normalise

        try:
            self.objective = normalise(objective, "car", probe=False)
        except ObjectiveError as exc:
            raise ValueError(str(exc)) from None
        self._user_objective()  # a user callable is imported now, not at the first oracle call
        if isinstance(resolution, str):
            if resolution not in RESOLUTIONS:
                raise ValueError(f"unknown resolution {resolution!r}; choose from {sorted(RESOLUTIONS)}")
            resolution = RESOLUTIONS[resolution]
        self.resolution = resolution
        self.engine_power_kw = float(engine_power_kw)
        self.drivetrain_efficiency = float(drivetrain_efficiency)
        self.rolling_resistance = float(rolling_resistance)
        self.reynolds = float(reynolds)
        self.reference_height_m = float(reference_height_m)
        self.lattice_speed = float(lattice_speed)
        self.max_batch = int(max_batch)
        self.compile = bool(compile)
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads
        if kernel not in ("auto", "numba", "torch"):
            raise ValueError(f"kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
        self.kernel = kernel
        self.max_change_from_seed_m = max_change_from_seed_m
        self.max_height_m = float(max_height_m)
        self.cabin_roof_m = float(cabin_roof_m)
        self.cabin_floor_m = float(cabin_floor_m)
        self.max_second_difference_m = float(max_second_difference_m)
        if not station_height_range_m[1] >= cabin_roof_m or not max_ride_height_m + cabin_roof_m <= max_height_m:
            raise ValueError("infeasible rules: the cabin roof must fit under the station and overall height limits")

        lows = [length_range_m[0], width_range_m[0], min_ground_clearance_m] + [station_height_range_m[0]] * STATIONS
        highs = [length_range_m[1], width_range_m[1], max_ride_height_m] + [station_height_range_m[1]] * STATIONS
        self._low = np.array(lows, dtype=np.float64)
        self._high = np.array(highs, dtype=np.float64)
        self._span = self._high - self._low
        self.input_shape = (len(PARAMETER_NAMES),)
        self.lower = torch.zeros(self.input_shape)
        self.upper = torch.ones(self.input_shape)
        self.oracle_calls = 0
        self._chunks_restored = 0  # chunks of flow read back from a killed run's ChunkStore, not simulated again
        # A plain-text copy of the resolution: the oracle task's cache key is built from the designer's plain
        # attributes (designers.base.designer_fingerprint), and a coarse score must never answer a fine query.
        self.lattice = (f"{resolution.cells_per_metre:g} cells/m, {resolution.flow_times:g} H/U "
                        f"(ramp {resolution.ramp_flow_times:g}, averaged {resolution.average_flow_times:g})")
        self._rows, self._bounds, self._labels = self._linear_constraints()
        self._interior = self._interior_point()

    def _user_objective(self):
        """The loaded user callable (``None`` for a built-in objective); loaded again after unpickling."""
        from designers.objectives import is_user_objective
        from designers.objectives.user import load

        return load(self.objective) if is_user_objective(self.objective) else None

    # --- representation --------------------------------------------------------------------------------------

    def encode(self, designs: Sequence[CarBlueprint]) -> torch.Tensor:
        """Blueprints → ``(n, 12)`` float32 in ``[0, 1]`` per parameter (the box the search moves in)."""
        vectors = np.stack([d.vector() for d in designs]) if len(designs) else np.zeros((0, len(self._low)))
        return torch.as_tensor((vectors - self._low) / self._span, dtype=torch.float32)

    def decode(self, x: torch.Tensor) -> list[CarBlueprint]:
        """Normalised tensor → blueprints (no projection: infeasible tensors give infeasible blueprints)."""
        values = x.detach().to("cpu", torch.float64).reshape(-1, *self.input_shape).numpy()
        return [CarBlueprint.from_vector(self._low + row * self._span) for row in values]

    def discretize(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The encoding of the blueprint ``x`` stands for: every length rounded to 0.1 mm, the precision of
        :meth:`key`, which is what the oracle task receives. The search records the surrogate's prediction on this
        point, so the predicted and the true score are of the same blueprint. ``reference`` (the seeds) is unused:
        a blueprint does not depend on its seed."""
        values = self._low + x.detach().to("cpu", torch.float64).reshape(-1, *self.input_shape).numpy() * self._span
        rounded = (np.round(values * 1e4) / 1e4 - self._low) / self._span
        return torch.as_tensor(rounded, dtype=x.dtype, device=x.device).reshape(x.shape)

    def _linear_constraints(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All rules as ``rows @ x ≤ bounds`` in the normalised coordinates (box rows included)."""
        d = len(self._low)
        rows, bounds, labels = [], [], []

        def add(coefficients: dict[int, float], physical_bound: float, label: str) -> None:
            row = np.zeros(d)
            bound = physical_bound
            for index, coefficient in coefficients.items():  # p = low + span·x
                row[index] += coefficient * self._span[index]
                bound -= coefficient * self._low[index]
            rows.append(row)
            bounds.append(bound)
            labels.append(label)

        for i in range(d):
            add({i: 1.0}, self._high[i], f"{PARAMETER_NAMES[i]} ≤ {self._high[i]:g}")
            add({i: -1.0}, -self._low[i], f"{PARAMETER_NAMES[i]} ≥ {self._low[i]:g}")
        for k in CABIN_STATIONS:
            add({3 + k: -1.0}, -self.cabin_roof_m, f"cabin roof at station {k}")
        for k in range(STATIONS):
            add({2: 1.0, 3 + k: 1.0}, self.max_height_m, f"overall height at station {k}")
        for k in range(1, STATIONS - 1):
            for sign in (1.0, -1.0):
                add({2 + k: sign, 3 + k: -2 * sign, 4 + k: sign}, self.max_second_difference_m, f"curvature at station {k}")
        return np.array(rows), np.array(bounds), labels

    def _interior_point(self) -> np.ndarray:
        """The centre of the largest ball inside the feasible set (normalised; a small LP): the anchor of the exact
        repair step in :meth:`project`, strictly feasible for any rule settings that leave room at all."""
        norms = np.linalg.norm(self._rows, axis=1)
        d = self._rows.shape[1]
        objective = np.zeros(d + 1)
        objective[-1] = -1.0  # maximise the radius
        solution = linprog(
            objective, A_ub=np.hstack([self._rows, norms[:, None]]), b_ub=self._bounds,
            bounds=[(None, None)] * d + [(0, None)], method="highs",
        )
        if not solution.success or solution.x[-1] <= 1e-6:
            raise ValueError("infeasible rules: no blueprint satisfies all of them with room to spare")
        return solution.x[:d]

    def linear_constraints(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every rule as ``rows @ x ≤ bounds`` in the normalised coordinates (box rows first), with a label each;
        for searches that want to handle the constraints themselves."""
        return self._rows.copy(), self._bounds.copy(), list(self._labels)

    def is_feasible(self, x: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
        """Per row of ``x`` (normalised, ``(n, 12)``): does it satisfy every rule within ``tolerance``?"""
        z = x.detach().to("cpu", torch.float64).reshape(-1, *self.input_shape)
        values = z @ torch.as_tensor(self._rows).T - torch.as_tensor(self._bounds)
        return (torch.isfinite(z).all(1) & (values <= tolerance).all(1)).to(x.device)

    def project(self, x: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """Map any tensor onto the feasible set: box, cabin, overall height and curvature rules.

        Dykstra's alternating projection approximates the Euclidean projection; a final step moves each point
        along the segment towards a strictly feasible blueprint just far enough to satisfy every rule exactly (the
        set is convex, so that segment stays feasible). Non-finite entries are replaced by that blueprint's.
        """
        shape, device, dtype = x.shape, x.device, x.dtype
        z = x.detach().to("cpu", torch.float64).reshape(-1, *self.input_shape).numpy().copy()
        anchor = self._interior.astype(np.float64)
        z = np.where(np.isfinite(z), z, anchor)
        rows, bounds = self._rows.astype(np.float64), self._bounds.astype(np.float64)
        outside = (z @ rows.T - bounds > 0).any(1)
        if outside.any():  # a point inside every rule is its own projection: only the others are iterated
            z[outside] = self._dykstra(z[outside], iterations)
        # Exact repair: smallest t with rows·(z + t (anchor − z)) ≤ bounds for every row.
        z, anchor, rows, bounds = (torch.from_numpy(a) for a in (z, anchor, rows, bounds))
        values = z @ rows.T - bounds  # (n, m), > 0 where violated
        gap = values - (anchor @ rows.T - bounds)  # a·z − a·anchor, > 0 where violated
        t = torch.where(values > 0, values / gap.clamp_min(1e-12), torch.zeros_like(values)).amax(1, keepdim=True)
        t = (t * (1 + 1e-9) + 1e-12).clamp(0.0, 1.0)
        z = torch.where(t > 1e-12, z + t * (anchor - z), z).clamp(0.0, 1.0)
        return z.to(device, dtype).reshape(shape)

    def _dykstra(self, z: np.ndarray, iterations: int) -> np.ndarray:
        """Dykstra's alternating projection of the rows of ``z`` onto the box and the general rules, at most
        ``iterations`` sweeps. A point whose position and corrections a whole sweep left unchanged (to 1e-12) is at
        a fixed point, where every later sweep repeats itself, and leaves the iteration. In numpy, as the arrays
        are small: each operation's overhead is the cost, and numpy's is a fraction of torch's."""
        general = slice(2 * len(self._low), None)  # rows after the box rows
        g_rows, g_bounds = self._rows[general].astype(np.float64), self._bounds[general].astype(np.float64)
        g_steps = g_rows / (g_rows * g_rows).sum(1, keepdims=True)
        increments = np.zeros((len(g_rows) + 1, *z.shape))
        done, active = z, np.arange(len(z))
        for _ in range(iterations):
            start, start_increments = z, increments.copy()
            y = np.clip(z + increments[-1], 0.0, 1.0)
            increments[-1] += z - y
            z = y
            for j in range(len(g_rows)):
                w = z + increments[j]
                excess = np.maximum(w @ g_rows[j] - g_bounds[j], 0.0)
                z = w - excess[:, None] * g_steps[j]
                increments[j] = w - z
            moving = (np.abs(z - start).max(1) > 1e-12) | (np.abs(increments - start_increments).max((0, 2)) > 1e-12)
            if not moving.all():
                done[active[~moving]] = z[~moving]
                active, z, increments = active[moving], z[moving], increments[:, moving]
                if not len(active):
                    break
        done[active] = z
        return done

    def sample(self, n: int, rng: np.random.Generator) -> list[CarBlueprint]:
        """Plausible, feasible blueprints of varied character: roof height, nose, hood, tail and fastback drawn
        independently, then projected onto the rules (so the data lies inside the feasible set, not on its edge)."""
        low, high = self._low, self._high
        vectors = np.empty((n, len(low)))
        vectors[:, 0] = rng.uniform(low[0], high[0], n)
        vectors[:, 1] = rng.uniform(low[1], high[1], n)
        vectors[:, 2] = rng.uniform(low[2], high[2], n)
        roof_ceiling = np.minimum(high[3], self.max_height_m - vectors[:, 2])
        roof = rng.uniform(self.cabin_roof_m + 0.02, roof_ceiling)
        nose = rng.uniform(low[3], 0.9, n)
        tail = rng.uniform(low[3], roof)
        hood = nose + rng.uniform(0.1, 0.9, n) * (roof - nose)
        deck = tail + rng.uniform(0.1, 0.9, n) * (roof - tail)
        heights = np.stack(
            [nose, hood, roof - rng.uniform(0, 0.1, n), roof, roof, roof - rng.uniform(0, 0.1, n),
             roof - rng.uniform(0, 0.15, n), deck, tail],
            axis=1,
        )
        heights[:, 2:7] += rng.normal(0.0, 0.03, (n, 5))
        vectors[:, 3:] = heights
        x = torch.as_tensor((vectors - low) / self._span)
        return self.decode(self.project(x))

    # --- text form -------------------------------------------------------------------------------------------

    def key(self, design: CarBlueprint) -> str:
        """``car:L=4.5000,W=1.8000,c=0.1500,h=0.5500/0.8500/…`` (metres, 0.1 mm)."""
        heights = "/".join(f"{h:.4f}" for h in design.heights_m)
        return f"car:L={design.length_m:.4f},W={design.width_m:.4f},c={design.ride_height_m:.4f},h={heights}"

    _KEY_FIELDS = ("L", "W", "c", "h")

    def parse(self, text: str) -> CarBlueprint:
        """Inverse of :meth:`key`; raises ``ValueError`` naming the offending part."""
        if not isinstance(text, str) or not text.startswith("car:"):
            raise ValueError(f"not a car key (must start with 'car:'): {text!r}")
        fields: dict[str, str] = {}
        for part in text[4:].split(","):
            name, sep, value = part.partition("=")
            if not sep or name not in self._KEY_FIELDS:
                raise ValueError(f"unknown field {part!r} in car key; expected {'/'.join(self._KEY_FIELDS)}")
            if name in fields:
                raise ValueError(f"field {name!r} given twice in car key")
            fields[name] = value
        missing = [name for name in self._KEY_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"car key lacks field(s) {missing}")

        def number(label: str, value: str) -> float:
            if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
                raise ValueError(f"{label}={value!r} is not a number")
            return float(value)

        heights = fields["h"].split("/")
        if len(heights) != STATIONS:
            raise ValueError(f"h has {len(heights)} station heights, expected {STATIONS}")
        return CarBlueprint(
            number("L", fields["L"]),
            number("W", fields["W"]),
            number("c", fields["c"]),
            tuple(number(f"h[{k}]", v) for k, v in enumerate(heights)),
        )

    # --- rules -----------------------------------------------------------------------------------------------

    def _blueprint_or_reason(self, design: Any) -> Any:
        """A key becomes its blueprint; an unparsable key becomes a reason string, which :meth:`violations`
        reports as the violation (never raises, like :meth:`violations`)."""
        if not isinstance(design, str):
            return design
        try:
            return self.parse(design)
        except ValueError as error:
            return f"unparsable car key: {error}"

    def violations(self, design: Any) -> str | None:
        """Why ``design`` breaks a rule (the first one found), or ``None``; never raises."""
        try:
            return self._first_violation(design)
        except (TypeError, ValueError) as error:  # e.g. heights_m=None or non-numeric fields
            return f"malformed blueprint: {type(error).__name__}: {error}"

    def _first_violation(self, design: Any) -> str | None:
        if isinstance(design, str) and design.startswith("unparsable car key: "):
            return design
        if not isinstance(design, CarBlueprint):
            return f"not a CarBlueprint: {type(design).__name__}"
        if len(design.heights_m) != STATIONS:
            return f"expected {STATIONS} station heights, got {len(design.heights_m)}"
        vector = design.vector()
        for name, value in zip(PARAMETER_NAMES, vector):
            if not math.isfinite(value):
                return f"non-finite parameter {name}={value}"
        for i, name in enumerate(PARAMETER_NAMES):
            if not self._low[i] - TOLERANCE_M <= vector[i] <= self._high[i] + TOLERANCE_M:
                what = "minimum ground clearance" if name == "ride_height_m" and vector[i] < self._low[i] else "bounds"
                return f"{name}={vector[i]:.4g} outside [{self._low[i]:g}, {self._high[i]:g}] ({what})"
        heights = np.asarray(design.heights_m)
        for k in CABIN_STATIONS:
            if heights[k] < self.cabin_roof_m - TOLERANCE_M:
                return (
                    f"cabin box does not fit: profile at station {k} is {heights[k]:.3f} m above the underbody, "
                    f"the cabin roof needs {self.cabin_roof_m:.3f} m"
                )
        tallest = int(np.argmax(heights))
        if design.ride_height_m + heights[tallest] > self.max_height_m + TOLERANCE_M:
            return f"too tall: {design.ride_height_m + heights[tallest]:.3f} m at station {tallest} > {self.max_height_m} m"
        second = heights[:-2] - 2 * heights[1:-1] + heights[2:]
        worst = int(np.argmax(np.abs(second)))
        if abs(second[worst]) > self.max_second_difference_m + TOLERANCE_M:
            return (
                f"profile too sharply curved at station {worst + 1}: second difference {second[worst]:+.3f} m, "
                f"limit ±{self.max_second_difference_m} m"
            )
        return None

    @property
    def bound_to_seed(self) -> bool:
        return self.max_change_from_seed_m is not None

    def constraints(self, designs: Sequence[CarBlueprint], seeds: Sequence[CarBlueprint]) -> ConstraintReport:
        """Feasibility rules, plus (when ``max_change_from_seed_m`` is set) the largest station-height change from
        the design's own seed. ``values`` reports the margins so tables can show how close each design sits."""
        if len(designs) != len(seeds):
            raise ValueError(f"got {len(designs)} designs but {len(seeds)} seeds")
        # The campaign passes keys (its tables hold text), a user may pass blueprints: accept both.
        designs = [self._blueprint_or_reason(d) for d in designs]
        seeds = [self._blueprint_or_reason(s) for s in seeds]
        violations: list[str | None] = []
        n = len(designs)
        change = np.full(n, np.nan)
        cabin_margin = np.full(n, np.nan)
        height = np.full(n, np.nan)
        clearance = np.full(n, np.nan)
        curvature = np.full(n, np.nan)
        for i, (design, seed) in enumerate(zip(designs, seeds)):
            reason = self.violations(design)
            if reason is None or isinstance(design, CarBlueprint) and len(design.heights_m) == STATIONS:
                h = np.asarray(design.heights_m, dtype=np.float64)
                cabin_margin[i] = h[list(CABIN_STATIONS)].min() - self.cabin_roof_m
                height[i] = design.ride_height_m + h.max()
                clearance[i] = design.ride_height_m
                curvature[i] = np.abs(h[:-2] - 2 * h[1:-1] + h[2:]).max()
                if isinstance(seed, CarBlueprint) and len(seed.heights_m) == STATIONS:
                    change[i] = np.abs(h - np.asarray(seed.heights_m)).max()
            if reason is None and self.max_change_from_seed_m is not None:
                if not change[i] <= self.max_change_from_seed_m + TOLERANCE_M:
                    reason = f"profile moved {change[i]:.3f} m from its seed, limit {self.max_change_from_seed_m} m"
            violations.append(reason)
        return ConstraintReport(
            violations=violations,
            values={
                "change_from_seed_m": change,
                "cabin_margin_m": cabin_margin,
                "overall_height_m": height,
                "ground_clearance_m": clearance,
                "max_second_difference_m": curvature,
            },
        )

    # --- physics ---------------------------------------------------------------------------------------------

    def mass_kg(self, design: CarBlueprint) -> float:
        """Kerb mass from a body-plus-powertrain model: fixed equipment 250 kg, floor pan and chassis 85 kg/m²
        of footprint, body shell 10 kg/m² of skin (both sides, roof, underbody, nose and tail), powertrain
        1.8 kg/kW. About 1.4 t for a 4.5 × 1.8 m, 110 kW saloon."""
        fractions = np.linspace(0.0, 1.0, 201)
        heights = design.profile(fractions)
        xs = fractions * design.length_m
        side_area = float(np.trapezoid(heights, xs))
        roof_length = float(np.sum(np.hypot(np.diff(xs), np.diff(heights))))
        perimeter = roof_length + design.length_m + design.heights_m[0] + design.heights_m[-1]
        skin = 2 * side_area + perimeter * design.width_m
        return 250.0 + 85.0 * design.length_m * design.width_m + 10.0 * skin + 1.8 * self.engine_power_kw

    def frontal_area_m2(self, design: CarBlueprint) -> float:
        """Frontal area of the extruded body: width × tallest station height (the ground gap excluded), the same
        height that normalises the 2-D ``C_D``, so ``C_D·A`` is the 2-D drag per width times the width."""
        return design.width_m * float(np.max(design.heights_m))

    def lattice_domain(self) -> dict[str, float]:
        """The simulated box in metres: inlet sponge, run-up, car bay, wake, outlet sponge; height with a top sponge."""
        return {
            "inlet_sponge": 1.0, "run_up": 1.5, "car_bay": float(self._high[0]), "wake": 3.0, "outlet_sponge": 1.5,
            "height": 6.0, "top_sponge": 1.5,
        }

    def rasterise(self, designs: Sequence[CarBlueprint]) -> tuple[torch.Tensor, dict[str, float]]:
        """Body masks ``(n, ny, nx)`` on the lattice (row 0 is the ground) and the lattice geometry.

        The underbody gap is at least 3 cells (a 1–2 cell gap makes the force flip sign from step to step), so at
        the coarse resolution low ride heights are simulated at ``3/cells_per_metre``.
        """
        r = self.resolution.cells_per_metre
        dom = self.lattice_domain()
        length = dom["inlet_sponge"] + dom["run_up"] + dom["car_bay"] + dom["wake"] + dom["outlet_sponge"]
        nx, ny = int(round(length * r)), int(round(dom["height"] * r)) + 1
        x_centres = (np.arange(nx) + 0.5) / r
        y_centres = (np.arange(ny) - 0.5) / r  # above the ground surface, which lies half-way into row 0
        nose = dom["inlet_sponge"] + dom["run_up"]
        masks = np.zeros((len(designs), ny, nx), dtype=bool)
        for i, d in enumerate(designs):
            gap = max(d.ride_height_m, 3.0 / r)
            inside = (x_centres >= nose) & (x_centres <= nose + d.length_m)
            top = np.full(nx, -np.inf)
            top[inside] = gap + d.profile((x_centres[inside] - nose) / d.length_m)
            masks[i] = (y_centres[:, None] >= gap) & (y_centres[:, None] <= top[None, :])
            masks[i, 0] = False
        return torch.from_numpy(masks), {"nx": nx, "ny": ny, "nose_m": nose, **dom}

    def flow_problem(self, masks: torch.Tensor, geometry: dict[str, float]) -> FlowProblem:
        """Moving ground, uniform far field, sponges at inlet, outlet and top; ν from the Reynolds number."""
        r = self.resolution.cells_per_metre
        ny, nx = int(geometry["ny"]), int(geometry["nx"])
        u = self.lattice_speed
        walls = torch.zeros(ny, nx, dtype=torch.bool)
        walls[0] = True
        x = (torch.arange(nx, dtype=torch.float64) + 0.5) / r
        y = (torch.arange(ny, dtype=torch.float64) - 0.5) / r
        length = nx / r
        inlet = ((geometry["inlet_sponge"] - x) / geometry["inlet_sponge"]).clamp(0, 1)
        outlet = ((x - (length - geometry["outlet_sponge"])) / geometry["outlet_sponge"]).clamp(0, 1)
        top = ((y - (geometry["height"] - geometry["top_sponge"])) / geometry["top_sponge"]).clamp(0, 1)
        sponge = torch.maximum(torch.maximum(inlet, outlet).unsqueeze(0), top.unsqueeze(1)) ** 2
        far_field = torch.zeros(2, ny, nx)
        far_field[0] = u
        viscosity = u * self.reference_height_m * r / self.reynolds
        return FlowProblem(
            body=masks, walls=walls, far_field=far_field, sponge=sponge.float(), viscosity=viscosity,
            wall_velocity=u, smagorinsky=0.1, bulk_relaxation=1.0,
        )

    def drag_coefficients(self, designs: Sequence[CarBlueprint]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """2-D ``C_D`` and ``C_L`` (on the tallest station height) of feasible blueprints, as one batched flow
        (in chunks of ``max_batch``; the last chunk is padded so that a compiled step is reused, not recompiled)."""
        n = len(designs)
        drag, lift = np.full(n, np.nan), np.full(n, np.nan)
        failures: list[str | None] = [None] * n
        if n == 0:
            return drag, lift, failures
        res, r, u = self.resolution, self.resolution.cells_per_metre, self.lattice_speed
        steps_per_flow_time = self.reference_height_m * r / u
        steps = int(round(res.flow_times * steps_per_flow_time))
        ramp = int(round(res.ramp_flow_times * steps_per_flow_time))
        average_from = steps - int(round(res.average_flow_times * steps_per_flow_time))
        chunk = min(self.max_batch, n)
        if self.compile and self._torch_kernel():  # one compiled graph per chunk size (20–50 s each): round up to a power of two, so a
            # process compiles at most log2(max_batch) + 1 shapes however the batches are cut; padding costs < 2×
            chunk = min(self.max_batch, 1 << (chunk - 1).bit_length())
        previous_threads = torch.get_num_threads()
        if self.threads and self.device.type == "cpu" and self._torch_kernel():
            torch.set_num_threads(self.threads)
        try:
            self._simulate_chunks(designs, chunk, steps, ramp, average_from, drag, lift, failures)
        finally:
            torch.set_num_threads(previous_threads)
        return drag, lift, failures

    def _torch_kernel(self) -> bool:
        """Does the flow run on the torch step (CUDA, ``kernel="torch"``, or numba missing)?"""
        from designers import lbm_numba

        return self.kernel == "torch" or self.device.type != "cpu" or not lbm_numba.available()

    def _simulate_chunks(
        self, designs: Sequence[CarBlueprint], chunk: int, steps: int, ramp: int, average_from: int,
        drag: np.ndarray, lift: np.ndarray, failures: list[str | None],
    ) -> None:
        r, u, n = self.resolution.cells_per_metre, self.lattice_speed, len(designs)
        if not self._torch_kernel():
            # The numba sweep costs about the same per blueprint in chunks of 8 as of 32 (0.25 vs 0.21 s coarse),
            # and each finished chunk is kept (below): a killed labelling task loses at most 8 blueprints' flow.
            chunk = min(chunk, RECOVERY_CHUNK)
        kept = ChunkStore(self._flow_fingerprint(chunk, steps, ramp, average_from))
        for start in range(0, n, chunk):
            part = list(designs[start : start + chunk])
            keys = [self.key(d) for d in part]
            saved = kept.load(keys)
            if saved is not None:
                drag[start : start + len(part)], lift[start : start + len(part)] = saved["drag"], saved["lift"]
                failures[start : start + len(part)] = saved["failures"]
                self._chunks_restored += 1
                continue
            padded = part + [part[0]] * (chunk - len(part))
            masks, geometry = self.rasterise(padded)
            result = simulate(
                self.flow_problem(masks, geometry), steps, ramp_steps=ramp, average_from=average_from,
                force_every=4, device=self.device, compile=self.compile, kernel=self.kernel, threads=self.threads,
            )
            for j, design in enumerate(part):
                height_cells = float(np.max(design.heights_m)) * r
                scale = 2.0 / (u * u * height_cells)
                drag[start + j] = float(result.force[j, 0]) * scale
                lift[start + j] = float(result.force[j, 1]) * scale
                failures[start + j] = result.failures[j]
            kept.save(keys, {"drag": drag[start : start + len(part)].tolist(),
                             "lift": lift[start : start + len(part)].tolist(),
                             "failures": failures[start : start + len(part)]})
        kept.forget()  # the whole batch is done: its result is the caller's (a Prefect task persists it) to keep

    def _flow_fingerprint(self, *run: Any) -> str:
        """What decides a chunk's flow: the plain settings (threads and the search's bound aside), the resolution,
        the run's lengths and the flow solver's source."""
        settings = {k: v for k, v in sorted(vars(self).items()) if not k.startswith("_")
                    and k not in ("threads", "max_change_from_seed_m", "oracle_calls")
                    and isinstance(v, (str, int, float, bool, type(None)))}
        return digest(json.dumps([settings, repr(self.resolution), str(self.device), run], default=str),
                      *(Path(module.__file__).read_bytes() for module in _solver_modules()))

    def _oracle(self, designs: list[CarBlueprint]) -> OracleResult:
        """The objective (default top speed in km/h; higher is better) of every design; infeasible or non-finite
        blueprints, diverged flows and designs the user's objective fails get NaN and a reason, the rest of the batch is scored in one batched simulation. Every design passed
        in counts as one oracle call. Extras (SI units): ``C_D``, ``C_L`` (2-D, a model of a car), ``A`` frontal
        area m², ``m`` mass kg, ``v`` top speed m/s, ``drag_area`` C_D·A m², ``power_residual`` W of the balance."""
        n = len(designs)
        failures: list[str | None] = [self.violations(d) for d in designs]
        valid = [i for i, f in enumerate(failures) if f is None]
        extras = {k: np.full(n, np.nan) for k in ("C_D", "C_L", "A", "m", "v", "drag_area", "power_residual")}
        drag, lift, flow_failures = self.drag_coefficients([designs[i] for i in valid])
        for j, i in enumerate(valid):
            if flow_failures[j] is not None:
                failures[i] = flow_failures[j]
                continue
            if not drag[j] > 0:
                failures[i] = f"non-positive drag coefficient {drag[j]:.3g} (flow not developed)"
                continue
            design = designs[i]
            extras["C_D"][i], extras["C_L"][i] = drag[j], lift[j]
            extras["A"][i] = self.frontal_area_m2(design)
            extras["m"][i] = self.mass_kg(design)
        ok = np.array([f is None for f in failures], dtype=bool)
        if ok.any():
            power = self.engine_power_kw * 1e3 * self.drivetrain_efficiency
            drag_area = extras["C_D"][ok] * extras["A"][ok]
            rolling = self.rolling_resistance * extras["m"][ok] * GRAVITY
            v = top_speed(np.full(ok.sum(), power), drag_area, rolling)
            extras["v"][ok] = v
            extras["drag_area"][ok] = drag_area
            extras["power_residual"][ok] = (0.5 * AIR_DENSITY * drag_area * v**2 + rolling) * v - power
        if self.objective == "top_speed":
            scores = np.where(ok, extras["v"] * 3.6, np.nan)
        elif self.objective == "drag_area":
            scores = np.where(ok, -extras["drag_area"], np.nan)
        else:
            scores = np.full(n, np.nan)
            rows = np.flatnonzero(ok)
            if len(rows):
                from designers.objectives.user import score_components

                values, reasons = score_components(self._user_objective(), {k: v[rows] for k, v in extras.items()},
                                                   [f"blueprint {self.key(designs[i])}" for i in rows])
                for j, i in enumerate(rows):
                    scores[i], failures[i] = values[j], reasons[j]
        return OracleResult(scores=scores, failures=failures, extras=extras)

    # --- pictures --------------------------------------------------------------------------------------------

    def render(
        self, pairs: Sequence[tuple[CarBlueprint, CarBlueprint]], path: str, captions: Sequence[str] | None = None
    ) -> None:
        """Side views of (seed, design) pairs, one row each: seed in grey, design in colour, the cabin box dashed,
        the ground line at zero. The title reminds the reader that the flow behind the numbers is 2-D."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        rows = max(len(pairs), 1)
        fig, axes = plt.subplots(rows, 1, figsize=(7.5, 2.1 * rows), squeeze=False)
        for row, (seed, design) in enumerate(pairs):
            ax = axes[row, 0]
            for blueprint, colour, label, fill in ((seed, "0.55", "seed", 0.15), (design, "tab:blue", "design", 0.3)):
                if not isinstance(blueprint, CarBlueprint) or not np.all(np.isfinite(blueprint.vector())):
                    continue
                xs, ys = self._outline(blueprint)
                ax.fill(xs, ys, color=colour, alpha=fill, lw=0)
                ax.plot(xs, ys, color=colour, lw=1.5, label=label)
            if isinstance(design, CarBlueprint) and np.all(np.isfinite(design.vector())):
                floor = design.ride_height_m + self.cabin_floor_m
                ax.add_patch(Rectangle(
                    (0.25 * design.length_m, floor), 0.5 * design.length_m,
                    design.ride_height_m + self.cabin_roof_m - floor, fill=False, ls="--", ec="tab:red", lw=1,
                    label="cabin box",
                ))
            ax.axhline(0.0, color="k", lw=1)
            ax.set_aspect("equal")
            ax.set_xlim(-0.2, float(self._high[0]) + 0.2)
            ax.set_ylim(-0.1, self.max_height_m + 0.15)
            ax.set_ylabel("m")
            if captions is not None and row < len(captions):
                ax.set_title(captions[row], fontsize=9)
            if row == 0:
                ax.legend(loc="upper right", fontsize=7, ncol=3)
        fig.suptitle("side profiles (drag from a 2-D flow: a model of a car, not a wind tunnel)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def render_flow(
        self, pairs: Sequence[tuple[CarBlueprint | None, CarBlueprint]], path: str,
        captions: Sequence[str] | None = None, quantity: str = "speed",
    ) -> None:
        """Flow pictures of (seed, design) pairs into a PNG: one row per pair, seed left, design right, the speed
        (``quantity="speed"``, |u|/U with streamlines) or ``"vorticity"`` field at the end of the oracle's own run
        (this designer's lattice, kernel and threads), with the profile, cabin box, moving ground and flow direction.
        Runs one batched flow of all the blueprints; not an oracle call (nothing is counted). Blueprints or their
        keys (:meth:`key`); a ``None`` seed draws the design alone. ``captions``: one per pair, shown over the
        design's panel. See :mod:`designers.car_flow_picture`."""
        from designers.car_flow_picture import car_flow_fields, render_flow_panels

        places = [(k, j) for k, pair in enumerate(pairs) for j, blueprint in enumerate(pair) if blueprint is not None]
        blueprints = [self._blueprint_or_reason(pairs[k][j]) for k, j in places]  # keys too
        labels = [captions[k] if j == 1 and captions is not None and k < len(captions) else "" for k, j in places]
        panels = dict(zip(places, car_flow_fields(self, blueprints, labels)))
        rows = [(panels.get((k, 0)), panels[(k, 1)]) for k in range(len(pairs))]
        render_flow_panels(rows, path, quantity=quantity,
                           x_range=(-1.5, float(self._high[0]) + 3.0), y_range=(-0.25, self.max_height_m + 1.6))

    @staticmethod
    def _outline(design: CarBlueprint) -> tuple[np.ndarray, np.ndarray]:
        fractions = np.linspace(0.0, 1.0, 120)
        top = design.ride_height_m + design.profile(fractions)
        xs = np.concatenate([[0.0], fractions * design.length_m, [design.length_m, 0.0]])
        ys = np.concatenate([[design.ride_height_m], top, [design.ride_height_m, design.ride_height_m]])
        return xs, ys
