"""Flow pictures: the pure renderer, the fields behind it, and CarDesigner.render_flow."""

from __future__ import annotations

import json

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


def test_a_row_without_a_seed_draws_the_design_alone(tmp_path):
    path = tmp_path / "alone.png"
    render_flow_panels([(None, synthetic_panel("a")), (None, synthetic_panel("b"))], str(path))
    alone = read_png(path)
    render_flow_panels([(synthetic_panel(), synthetic_panel("a")), (None, synthetic_panel("b"))], str(path))
    mixed = read_png(path)
    assert alone.shape[1] < 0.75 * mixed.shape[1]  # one column when no row has a seed


# --- advdesign render ---------------------------------------------------------------------------------------------

def _render(argv, capsys):
    from advdesign.cli import main

    code = main(["render", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_render_draws_keys_on_the_real_oracle_flow(tmp_path, capsys):
    designer = CarDesigner(resolution="smoke")
    design = CarBlueprint(4.8, 1.8, 0.15, (0.5, 0.9, 1.3, 1.4, 1.4, 1.35, 1.2, 1.0, 0.8))
    path, report = tmp_path / "pictures" / "keys.png", tmp_path / "keys.json"
    code, out, err = _render([designer.key(design), designer.key(SALOON), "--seed", designer.key(SALOON),
                              "--resolution", "smoke", "--threads", "1", "--output", str(path), "--json",
                              str(report)], capsys)
    assert code == 0, err
    assert f"of 2 designs in {path}" in out
    image = read_png(path)
    assert image.shape[0] > 400 and image.shape[1] > 1000 and image[..., :3].std() > 0.1  # two rows of two
    result = json.loads(report.read_text())
    assert result["png"] == str(path) and result["bytes"] == path.stat().st_size > 20_000
    assert [row["design"] for row in result["rows"]] == [designer.key(design), designer.key(SALOON)]
    assert all(row["seed"] == designer.key(SALOON) and row["problem"] is None for row in result["rows"])


def test_render_names_a_rule_breaking_key_and_still_draws(tmp_path, capsys):
    too_tall = CarBlueprint(4.5, 1.8, 0.3, (0.7, 1.0, 1.3, 1.75, 1.75, 1.4, 1.3, 1.1, 0.9))
    path = tmp_path / "tall.png"
    code, out, err = _render([CarDesigner().key(too_tall), "--resolution", "smoke", "--output", str(path)], capsys)
    assert code == 0, err
    assert "not simulated" in out and "tall" in out and path.stat().st_size > 5_000


KEY = "car:L=4.5000,W=1.8000,c=0.1500,h=0.7000/1.0000/1.3000/1.4500/1.4500/1.4000/1.3000/1.1000/0.9000"


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to render"),
    (["car:L=4.5"], "key 1 'car:L=4.5': car key lacks field"),
    ([KEY, "boat:1"], "key 2 'boat:1': not a car key"),
    ([KEY, KEY.replace("h=0.7000/", "h=")], "key 2 "),
    ([KEY, "--seed", "car:L=x"], "--seed 'car:L=x'"),
    (["--seed", KEY], "--seed is drawn beside car keys"),
    (["--campaign", "missing.json"], "campaign file missing.json not found"),
    ([KEY, "--output", "flow.jpg"], "--output flow.jpg"),
    ([KEY, "--defenses", "vat"], "--defenses picks from a campaign"),
    ([KEY, "--quantity", "pressure"], "unknown quantity 'pressure'"),
])
def test_render_bad_input_is_one_line_naming_the_culprit(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _render(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("advdesign render: error: ") and message in err, err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"designer": "car"}', "is not a campaign's --json output"),
    ('{"designer": "molecule", "defenses": {}}', "is a molecule campaign"),
])
def test_render_rejects_a_file_that_is_not_a_car_campaign(content, message, capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(content)
    code, _, err = _render(["--campaign", str(path), "--output", str(tmp_path / "x.png")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err and str(path) in err, err


def _design_table(designer: CarDesigner, seed: CarBlueprint, lengths: list[float], scores: list[float]):
    import pandas as pd

    designs = [CarBlueprint(length, seed.width_m, seed.ride_height_m, seed.heights_m) for length in lengths]
    return pd.DataFrame({"seed_index": 0, "seed": designer.key(seed), "design": [designer.key(d) for d in designs],
                         "seed_score": 90.0, "true_score": scores,
                         "oracle_failure": [None] * (len(scores) - 1) + ["flow solver diverged"]})


@pytest.fixture
def logged_campaign(tmp_path, tracking_uri):
    """A car campaign's runs as the campaign logs them (parent tagged kind=campaign, one run per defense with its
    designs table; one defense with two nested rounds), without running one; and its --json file."""
    from tasks.tracking import Tracker

    designer = CarDesigner(resolution="smoke")
    tracker = Tracker(tracking_uri, "render-test")
    parent = tracker.start_run("campaign-car", tags={"designer": "car", "kind": "campaign"},
                               params={"designer.name": "car", "designer.objective": "top_speed"})
    runs = {}
    for defense, lengths, scores in (("none", [4.4, 4.6, 4.7], [91.0, 95.0, 99.0]),
                                     ("vat", [4.3, 4.8, 4.9], [97.0, 93.0, 120.0])):
        run = tracker.start_run(f"car-{defense}", parent_run_id=parent, tags={"defense": defense, "designer": "car"})
        table = _design_table(designer, SALOON, lengths, scores)
        if defense == "vat":  # --rounds 2: the tables live in the nested round runs
            for number, half in enumerate((table[:1], table[1:]), 1):
                round_run = tracker.start_run(f"round-{number}", parent_run_id=run, tags={"defense": defense})
                tracker.log_table(round_run, half.reset_index(drop=True), "designs.json")
                tracker.end_run(round_run)
        else:
            tracker.log_table(run, table, "designs.json")
        tracker.end_run(run)
        runs[defense] = run
    tracker.end_run(parent)
    summary = {"designer": "car", "mlflow": {"tracking_uri": tracking_uri, "parent_run_id": parent},
               "defenses": {"none": {"run_id": runs["none"]}, "fgsm": {"error": "diverged"},
                            "vat": {"run_id": runs["vat"]}}}
    path = tmp_path / "car.json"
    path.write_text(json.dumps(summary))
    return path, summary, designer


def test_design_tables_reads_a_campaign_back_by_defense(logged_campaign):
    from tasks.tracking import design_tables

    _, summary, designer = logged_campaign
    uri = summary["mlflow"]["tracking_uri"]
    tables = design_tables(summary["mlflow"]["parent_run_id"], uri)
    assert list(tables) == ["none", "vat"] and [len(t) for t in tables.values()] == [3, 3]
    assert list(design_tables(summary["defenses"]["vat"]["run_id"], uri)) == ["vat"]
    # The campaign's designer settings come with each table (logged on the parent run only).
    assert all(t.attrs["designer"] == {"name": "car", "objective": "top_speed"} for t in tables.values())
    with pytest.raises(ValueError, match="no MLflow run 'nope'"):
        design_tables("nope", uri)
    with pytest.raises(ValueError, match="no MLflow store"):
        design_tables("nope", uri.replace("mlflow.db", "elsewhere.db"))


@pytest.mark.parametrize("source", ["campaign", "run"])
def test_render_draws_a_campaigns_best_designs_beside_their_seeds(source, logged_campaign, tmp_path, capsys):
    path, summary, designer = logged_campaign
    given = (["--campaign", str(path)] if source == "campaign" else
             ["--run", summary["mlflow"]["parent_run_id"], "--tracking-uri", summary["mlflow"]["tracking_uri"]])
    png, report = tmp_path / "best.png", tmp_path / "best.json"
    code, out, err = _render([*given, "--n-best", "1", "--resolution", "smoke", "--quantity", "vorticity",
                              "--output", str(png), "--json", str(report)], capsys)
    assert code == 0, err
    rows = json.loads(report.read_text())["rows"]
    # Per defense the seed's best design the oracle scored (the last row of each table, 99 and 120, failed), the
    # vat one found across its two rounds' runs.
    assert [row["caption"] for row in rows] == ["none: 90.0 → 95.0 km/h", "vat: 90.0 → 97.0 km/h"]
    assert all(row["seed"] == designer.key(SALOON) for row in rows)
    image = read_png(png)
    assert image.shape[0] > 400 and image.shape[1] > 1000  # two rows, seed beside design
    code, _, err = _render([*given, "--defenses", "vat,pgd", "--output", str(png)], capsys)
    assert code == 2 and "no defense 'pgd'" in err and len(err.strip().splitlines()) == 1, err


def test_the_campaigns_flow_artifact_draws_the_first_pairs_only(tmp_path):
    from designers.car_flow_picture import flow_picture_artifact

    designer = CarDesigner(resolution=SMOKE)
    keys = [designer.key(CarBlueprint(length, 1.8, 0.15, SALOON.heights_m)) for length in (4.3, 4.5, 4.7, 4.9)]
    two = flow_picture_artifact(designer, keys, keys[::-1], tmp_path / "deep" / "two.png", ["a", "b", "c", "d"],
                                max_pairs=2)
    one = flow_picture_artifact(designer, keys, keys[::-1], tmp_path / "one.png", max_pairs=1)
    assert two == tmp_path / "deep" / "two.png" and designer.oracle_calls == 0
    assert 1.6 < read_png(two).shape[0] / read_png(one).shape[0] < 2.4  # two rows against one
    with pytest.raises(ValueError, match="4 seeds but 3 designs"):
        flow_picture_artifact(designer, keys, keys[:3], tmp_path / "x.png")


def test_captions_say_the_objectives_unit():
    from designers.car_flow_picture import best_pairs, score_unit

    table = _design_table(CarDesigner(resolution=SMOKE), SALOON, [4.4, 4.6], [-0.9, -0.5])
    assert score_unit(None) == score_unit("top_speed") == "km/h" and score_unit("my.module:f") == ""
    [(_, _, caption)] = best_pairs(table.assign(seed_score=-1.2), 3, "vat", score_unit("drag_area"))
    assert caption == "vat: -1.2 → -0.9 m² (−C_D·A)"  # the second design failed on the oracle
    [(_, _, bare)] = best_pairs(table.assign(seed_score=-1.2), 3, unit="")
    assert bare == "-1.2 → -0.9"
