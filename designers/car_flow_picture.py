"""Pictures of the flow around car blueprints: the speed (or vorticity) field, the profile, the cabin box, the ground.

Two layers, so that the campaign can log a picture without this module knowing about MLflow or Prefect:

* :func:`car_flow_fields` runs the oracle's own flow (same lattice, same run length, same kernel) for a list of
  blueprints and returns one :class:`FlowPanel` per blueprint: plain arrays in metres and units of the free stream;
* :func:`render_flow_panels` is a pure function from panels to a PNG file (matplotlib, Agg backend): one row per
  (seed, design) pair, seed left, design right, a shared colour scale.

:meth:`designers.car.CarDesigner.render_flow` chains the two. The flow is 2-D at ``Re_h`` ≈ 400: a model of a car,
not a wind tunnel; the pictures say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from designers.car import CarBlueprint, CarDesigner


@dataclass(frozen=True)
class FlowPanel:
    """One blueprint's flow, ready to draw (lengths in metres, x from the nose, y above the ground).

    Attributes:
        ux, uy: ``(ny, nx)`` velocity over the free-stream speed (NaN inside solids, everywhere if diverged).
        x, y: cell-centre coordinates, ``(nx,)`` and ``(ny,)`` (evenly spaced).
        outline_x, outline_y: closed outline of the body (ride height included).
        cabin: ``(x0, y0, width, height)`` of the cabin box, or ``None``.
        caption: text above the panel (e.g. the top speed).
        failure: why the flow could not be computed (then the panel shows the outline only).
    """

    ux: np.ndarray
    uy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    outline_x: np.ndarray
    outline_y: np.ndarray
    cabin: tuple[float, float, float, float] | None = None
    caption: str = ""
    failure: str | None = None

    @property
    def speed(self) -> np.ndarray:
        """|u| / U."""
        return np.hypot(self.ux, self.uy)

    @property
    def vorticity(self) -> np.ndarray:
        """``∂u_y/∂x − ∂u_x/∂y`` in free-stream speeds per metre (central differences; NaN next to solids)."""
        if len(self.x) < 2 or len(self.y) < 2:
            return np.full_like(self.ux, np.nan)
        return np.gradient(self.uy, self.x[1] - self.x[0], axis=1) - np.gradient(self.ux, self.y[1] - self.y[0], axis=0)


def car_flow_fields(
    designer: "CarDesigner", designs: Sequence["CarBlueprint"], captions: Sequence[str] | None = None
) -> list[FlowPanel]:
    """Run the oracle's flow for ``designs`` (one batch) and return the final fields as panels.

    Not an oracle call (nothing is counted or scored); the lattice, run length, kernel and threads are the
    designer's, so the picture shows the flow that the drag of the scores was averaged over (its last instant).
    Infeasible or non-finite blueprints get a panel with the reason and no field.
    """
    from designers.lbm import simulate

    designs = list(designs)
    reasons = [designer.violations(d) for d in designs]
    valid = [i for i, reason in enumerate(reasons) if reason is None]
    res, r, u = designer.resolution, designer.resolution.cells_per_metre, designer.lattice_speed
    fields = None
    geometry: dict[str, float] = {}
    masks = None
    if valid:
        masks, geometry = designer.rasterise([designs[i] for i in valid])
        steps_per_flow_time = designer.reference_height_m * r / u
        steps = int(round(res.flow_times * steps_per_flow_time))
        ramp = int(round(res.ramp_flow_times * steps_per_flow_time))
        average_from = steps - int(round(res.average_flow_times * steps_per_flow_time))
        result = simulate(
            designer.flow_problem(masks, geometry), steps, ramp_steps=ramp, average_from=average_from,
            force_every=4, device=designer.device, compile=False, kernel=designer.kernel, threads=designer.threads,
            return_fields=True,
        )
        fields = result.fields.numpy()
        for j, i in enumerate(valid):
            reasons[i] = result.failures[j]
    else:
        _, geometry = designer.rasterise([])
    nx, ny = int(geometry["nx"]), int(geometry["ny"])
    nose = float(geometry["nose_m"])
    x = (np.arange(nx) + 0.5) / r - nose
    y = (np.arange(ny) - 0.5) / r
    panels = []
    for i, design in enumerate(designs):
        outline_x, outline_y, cabin = _outline(designer, design)
        ux = uy = np.full((ny, nx), np.nan)
        if i in valid and reasons[i] is None:
            j = valid.index(i)
            solid = masks[j].numpy().copy()
            solid[0] = True  # the ground row
            ux = np.where(solid, np.nan, fields[j, 1] / u)
            uy = np.where(solid, np.nan, fields[j, 2] / u)
        caption = captions[i] if captions is not None and i < len(captions) else ""
        panels.append(FlowPanel(ux, uy, x, y, outline_x, outline_y, cabin, caption, reasons[i]))
    return panels


def _outline(designer: "CarDesigner", design) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """The body's closed outline (as simulated: the underbody gap is at least 3 cells) and its cabin box."""
    from designers.car import CarBlueprint

    if not isinstance(design, CarBlueprint) or not np.all(np.isfinite(design.vector())):
        return np.zeros(0), np.zeros(0), None
    gap = max(design.ride_height_m, 3.0 / designer.resolution.cells_per_metre)
    fractions = np.linspace(0.0, 1.0, 160)
    top = gap + design.profile(fractions)
    xs = np.concatenate([[0.0], fractions * design.length_m, [design.length_m, 0.0]])
    ys = np.concatenate([[gap], top, [gap, gap]])
    floor = gap + designer.cabin_floor_m
    cabin = (0.25 * design.length_m, floor, 0.5 * design.length_m, gap + designer.cabin_roof_m - floor)
    return xs, ys, cabin


def render_flow_panels(
    rows: Sequence[tuple[FlowPanel | None, FlowPanel]],
    path: str,
    quantity: str = "speed",
    title: str | None = None,
    x_range: tuple[float, float] = (-1.5, 8.0),
    y_range: tuple[float, float] = (-0.25, 3.5),
    dpi: int = 110,
) -> None:
    """Draw (seed, design) rows of flow panels side by side into a PNG at ``path``; pure (files only). A row whose
    seed is ``None`` shows the design alone (if no row has a seed, the picture is one column of designs).

    ``quantity``: ``"speed"`` (|u|/U on one colour scale for all panels, a few streamlines) or ``"vorticity"`` (a diverging
    scale symmetric about 0). Each panel shows the field, the body (grey, outlined), the cabin box (dashed red), the
    ground (moving at the free-stream speed, black) and the flow direction (arrow).
    """
    if quantity not in ("speed", "vorticity"):
        raise ValueError(f"quantity must be 'speed' or 'vorticity', got {quantity!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    n_rows = max(len(rows), 1)
    aspect = (y_range[1] - y_range[0]) / (x_range[1] - x_range[0])
    paired = any(row[0] is not None for row in rows)
    if not paired:  # designs alone: one column
        rows = [(row[1],) for row in rows]
    width = 12.0 if paired else 6.5
    fig, axes = plt.subplots(n_rows, 2 if paired else 1, figsize=(width, 6.0 * aspect * n_rows + 0.9),
                             squeeze=False, layout="constrained")
    panels = [p for row in rows for p in row if p is not None]
    if quantity == "speed":
        values = [np.nanpercentile(p.speed, 99.5) for p in panels if np.isfinite(p.speed).any()]
        cmap, vmin, vmax, label = "viridis", 0.0, max([1.5] + [float(v) for v in values]), "|u| / U"
    else:
        values = [np.nanpercentile(np.abs(p.vorticity), 99) for p in panels if np.isfinite(p.vorticity).any()]
        limit = float(max(values)) if values else 1.0
        cmap, vmin, vmax, label = "RdBu_r", -limit, limit, "vorticity (U per m)"
    ink = "w" if quantity == "speed" else "k"  # the arrows' colour, against the field's background
    image = None
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r, c]
            if panel is None:  # no seed in this row
                ax.axis("off")
                continue
            field = panel.speed if quantity == "speed" else panel.vorticity
            ax.set_facecolor("0.75")  # NaN cells: the body as the lattice sees it (stair-stepped), grey
            if np.isfinite(field).any():
                dx = panel.x[1] - panel.x[0] if len(panel.x) > 1 else 1.0
                dy = panel.y[1] - panel.y[0] if len(panel.y) > 1 else 1.0
                extent = (panel.x[0] - dx / 2, panel.x[-1] + dx / 2, panel.y[0] - dy / 2, panel.y[-1] + dy / 2)
                image = ax.imshow(np.ma.masked_invalid(field), origin="lower", extent=extent, cmap=cmap,
                                  vmin=vmin, vmax=vmax, interpolation="bilinear", aspect="equal")
                if quantity == "speed":
                    _streamlines(ax, panel, x_range, y_range)
            else:
                ax.text(0.5, 0.5, panel.failure or "no flow", transform=ax.transAxes, ha="center", va="center",
                        fontsize=8, wrap=True)
            if len(panel.outline_x):
                ax.fill(panel.outline_x, panel.outline_y, color="0.75", lw=0, zorder=3)
                ax.plot(panel.outline_x, panel.outline_y, color="k", lw=1.0, zorder=4)
            if panel.cabin is not None:
                x0, y0, w, h = panel.cabin
                ax.add_patch(Rectangle((x0, y0), w, h, fill=False, ls="--", ec="tab:red", lw=1.0, zorder=5))
            ax.axhspan(y_range[0], 0.0, color="k", zorder=3)
            ax.annotate("", xy=(x_range[0] + 1.2, 3.0), xytext=(x_range[0] + 0.2, 3.0),
                        arrowprops=dict(arrowstyle="->", color=ink, lw=1.5), zorder=6)
            ax.text(x_range[0] + 0.2, 3.12, "flow", color=ink, fontsize=7, zorder=6)
            ax.add_patch(FancyArrowPatch((x_range[1] - 1.6, y_range[0] / 2), (x_range[1] - 0.4, y_range[0] / 2),
                                         arrowstyle="->", color="w", lw=1.0, mutation_scale=8, zorder=6))
            ax.text(x_range[1] - 3.4, y_range[0] / 2, "ground moves", color="w", fontsize=6, va="center", zorder=6)
            ax.set_xlim(*x_range)
            ax.set_ylim(*y_range)
            ax.set_title(("seed" if paired and c == 0 else "design") + (f": {panel.caption}" if panel.caption else ""),
                         fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("m", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.9, pad=0.01, label=label)
    fig.suptitle(title or "2-D flow at Re_h = 400 at the end of the run (a model of a car, not a wind tunnel)",
                 fontsize=9)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _streamlines(ax, panel: FlowPanel, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    """A few streamlines seeded upstream of the nose (white, thin); skipped if matplotlib cannot trace them."""
    starts = np.stack([np.full(9, x_range[0] + 0.3), np.linspace(0.15, y_range[1] - 0.4, 9)], axis=1)
    try:
        ax.streamplot(panel.x, panel.y, np.ma.masked_invalid(panel.ux), np.ma.masked_invalid(panel.uy),
                      start_points=starts, color="w", linewidth=0.5, arrowsize=0.5, density=4, broken_streamlines=False,
                      zorder=2)
    except (ValueError, TypeError):  # pragma: no cover - decoration only
        pass


#: Pairs a campaign's flow picture shows at most: one batched flow of 2 × 3 blueprints (~0.5 s on the coarse
#: lattice with the numba kernel, ~20 s with the eager torch step on a CPU).
ARTIFACT_PAIRS = 3


def score_unit(objective: str | None) -> str:
    """How a car score reads in a caption: the top speed in km/h (the default objective, also when unknown), the
    drag area's negative in m², a user objective bare."""
    return {"top_speed": "km/h", "drag_area": "m² (−C_D·A)"}.get(objective or "top_speed", "")


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def best_pairs(table, n: int, label: str = "", unit: str = "km/h") -> list[tuple[str, str, str]]:
    """``(seed key, design key, caption)`` for the ``n`` seeds whose best verified design gained most, best first.

    ``table``: a campaign's verified-design table (``designs.csv``: ``seed``, ``design``, ``seed_score``,
    ``true_score``, ``oracle_failure``); per seed its best design by true score; rows the oracle failed on are
    skipped. The caption reads ``label: seed score → design score unit``.
    """
    if not len(table):
        return []
    ok = table[table["oracle_failure"].isna()] if "oracle_failure" in table else table
    ok = ok[np.isfinite(ok["true_score"].astype(float))]
    if not len(ok):
        return []
    best = ok.loc[ok.groupby("seed")["true_score"].idxmax()]
    best = best.assign(gain=best["true_score"] - best["seed_score"]).sort_values("gain", ascending=False).head(n)
    prefix, suffix = (f"{label}: " if label else ""), (f" {unit}" if unit else "")
    return [(seed, design, f"{prefix}{_number(s)} → {_number(t)}{suffix}")
            for seed, design, s, t in zip(best["seed"], best["design"], best["seed_score"], best["true_score"])]


def flow_picture_artifact(
    designer: "CarDesigner", seed_keys: Sequence[str], best_keys: Sequence[str], path,
    captions: Sequence[str] | None = None, quantity: str = "speed", max_pairs: int = ARTIFACT_PAIRS,
):
    """The flow around seeds and their best designs, side by side, as a PNG at ``path`` (returned as a ``Path``).

    The campaign's picture of its best designs (one row per seed, seed left); at most ``max_pairs`` rows (the
    first ones: pass them best first), so the cost is one batched flow of ``2 × max_pairs`` blueprints on the
    designer's lattice. Not an oracle call. Keys or blueprints.
    """
    from pathlib import Path

    if len(seed_keys) != len(best_keys):
        raise ValueError(f"{len(seed_keys)} seeds but {len(best_keys)} designs")
    pairs = list(zip(seed_keys, best_keys))[:max_pairs]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    designer.render_flow(pairs, str(path), list(captions)[:max_pairs] if captions is not None else None,
                         quantity=quantity)
    return path
