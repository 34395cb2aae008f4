"""Flow pictures: the pure renderer, the fields behind it, and CarDesigner.render_flow."""

from __future__ import annotations

import numpy as np
import pytest

from designers.car import CarBlueprint, CarDesigner, Resolution
from designers.car_flow_picture import FlowPanel, car_flow_fields, render_flow_panels

SMOKE = Resolution(cells_per_metre=4.0, flow_times=12.0, ramp_flow_times=4.0, average_flow_times=4.0)
SALOON = CarBlueprint(4.5, 1.8, 0.15, (0.7, 1.0, 1.3, 1.45, 1.45, 1.4, 1.3, 1.1, 0.9))


def synthetic_panel(caption: str = "") -> FlowPanel:
    x = np.arange(-2.0, 9.0, 0.25)
    y = np.arange(-0.125, 3.6, 0.25)
    ux = np.ones((len(y), len(x)))
    ux *= 1 + 0.3 * np.sin(x)[None, :]
    uy = 0.1 * np.cos(y)[:, None] * np.ones_like(ux)
    body = (x[None, :] > 0) & (x[None, :] < 4) & (y[:, None] > 0.3) & (y[:, None] < 1.4)
    ux[body] = uy[body] = np.nan
    outline_x = np.array([0.0, 4.0, 4.0, 0.0, 0.0])
    outline_y = np.array([0.3, 0.3, 1.4, 1.4, 0.3])
    return FlowPanel(ux, uy, x, y, outline_x, outline_y, (1.0, 0.5, 2.0, 0.8), caption)


def read_png(path) -> np.ndarray:
    import matplotlib.image

    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(str(path))


@pytest.mark.parametrize("quantity", ["speed", "vorticity"])
def test_renderer_is_pure_and_draws_every_panel(tmp_path, quantity):
    path = tmp_path / "flow.png"
    failed = FlowPanel(np.full((3, 4), np.nan), np.full((3, 4), np.nan), np.arange(4.0), np.arange(3.0),
                       np.zeros(0), np.zeros(0), None, "", "flow solver diverged")
    render_flow_panels([(synthetic_panel(), synthetic_panel("120 km/h")), (failed, synthetic_panel())], str(path),
                       quantity=quantity)
    image = read_png(path)
    assert image.shape[0] > 300 and image.shape[1] > 800  # two rows of two panels
    assert image[..., :3].std() > 0.1  # a picture, not a blank page
    vorticity = synthetic_panel().vorticity
    inside = np.isfinite(vorticity)
    assert inside.any() and np.isnan(vorticity[np.isnan(synthetic_panel().ux)]).all()
    with pytest.raises(ValueError, match="quantity"):
        render_flow_panels([(synthetic_panel(), synthetic_panel())], str(path), quantity="pressure")


def test_fields_are_the_oracles_flow_and_cost_no_oracle_call():
    designer = CarDesigner(resolution=SMOKE)
    too_tall = CarBlueprint(4.5, 1.8, 0.3, (0.7, 1.0, 1.3, 1.75, 1.75, 1.4, 1.3, 1.1, 0.9))
    panels = car_flow_fields(designer, [SALOON, too_tall], ["a", "b"])
    assert designer.oracle_calls == 0
    saloon, tall = panels
    assert saloon.failure is None and saloon.caption == "a"
    assert tall.failure is not None and "tall" in tall.failure and np.isnan(tall.ux).all()
    masks, geometry = designer.rasterise([SALOON])
    assert saloon.ux.shape == (int(geometry["ny"]), int(geometry["nx"]))
    assert np.isnan(saloon.ux[masks[0].numpy()]).all() and np.isnan(saloon.ux[0]).all()  # body and ground
    fluid = ~np.isnan(saloon.ux)
    assert fluid.sum() > 0.8 * saloon.ux.size
    assert np.isfinite(saloon.ux[fluid]).all()
    # Far above the car the flow is the free stream; over the roof it is faster, behind the tail slower.
    upstream = saloon.speed[:, saloon.x < -1.0]
    assert abs(float(np.nanmedian(upstream)) - 1.0) < 0.1
    roof = (saloon.x > 1.5) & (saloon.x < 3.0)
    over_roof = saloon.speed[(saloon.y > 2.4) & (saloon.y < 3.0)][:, roof]  # the smoke gap is 0.75 m: roof at 2.2 m
    behind = saloon.speed[(saloon.y > 0.4) & (saloon.y < 1.2)][:, (saloon.x > 4.7) & (saloon.x < 5.5)]
    assert np.nanmean(over_roof) > 1.1 > 0.6 > np.nanmean(behind)


def test_designer_renders_seed_and_design_side_by_side(tmp_path):
    designer = CarDesigner(resolution=SMOKE)
    design = CarBlueprint(4.8, 1.8, 0.15, (0.5, 0.9, 1.3, 1.4, 1.4, 1.35, 1.2, 1.0, 0.8))
    path = tmp_path / "pairs.png"
    designer.render_flow([(SALOON, design), (designer.key(SALOON), "not a key")], str(path),
                         captions=["+4 km/h", "keys work, bad keys show their reason"])
    image = read_png(path)
    assert image[..., :3].std() > 0.1 and image.shape[0] > 400  # two rows
    assert designer.oracle_calls == 0
