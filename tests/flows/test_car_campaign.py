"""The campaign on car blueprints end to end: real Prefect, real SQLite MLflow, the real flow solver.

The lattice is the ``smoke`` one (4 cells/m, 12 flow times, eager): the plumbing is what is under test here; the
physics of the coarse lattice is tested in test_car.py / test_lbm.py and measured in docs/car-oracle.md.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from designers.car import CarDesigner

SMOKE = {"name": "car", "resolution": "smoke", "compile": False}
SEEDS, BUDGET = 3, 6


@pytest.fixture(scope="module")
def car_run(tmp_path_factory, prefect_api):
    from flows.campaign import campaign
    from flows.parameters import CampaignParameters

    uri = f"sqlite:///{tmp_path_factory.mktemp('car-campaign') / 'mlflow.db'}"
    params = CampaignParameters(
        designer=SMOKE,
        data={"n_labelled": 40, "n_unlabelled": 16, "n_seed_pool": 12, "n_seeds": SEEDS, "oracle_batch_size": 26},
        surrogate={"hidden": (32,), "epochs": 10},
        search={"steps": 6, "top_k": 2, "budget": BUDGET, "calls_per_seed": BUDGET // SEEDS, "batch_per_seed": 1,
                "ensemble_size": 2, "proposals_per_incumbent": 16, "finetune_epochs": 1},
        tracking_uri=uri,
    )
    return campaign(params), uri


def test_car_campaign_writes_the_molecule_campaigns_fields(car_run):
    summary, uri = car_run
    assert summary["designer"] == "car"
    assert summary["mlflow"]["tracking_uri"] == uri
    assert set(summary["defenses"]) == {"none", "fgsm", "vat"}
    verified = sum(d["n_designs"] for d in summary["defenses"].values())
    assert summary["oracle_calls"] == 40 + 12 + verified  # labelled + pool + every verified design
    for defense, result in summary["defenses"].items():
        assert result["model_uri"].startswith("models:/advdesign-car-surrogate/")  # a version, never an alias
        assert result["n_seeds"] == SEEDS
        assert 1 <= result["n_designs"] <= BUDGET
        for key in ("valid_fraction", "constraint_satisfied_fraction", "success_rate", "transfer_rate"):
            assert 0.0 <= result[key] <= 1.0
        # Projection keeps every point of every trajectory feasible (the molecule's similarity cannot promise that).
        assert result["constraint_satisfied_fraction"] == 1.0
        for key in ("oracle_improvement_mean", "predicted_improvement_mean", "improvement_gap", "validation_r2"):
            assert math.isfinite(result[key])


def test_every_verified_blueprint_satisfies_the_car_rules_and_its_score_is_the_oracles(car_run):
    summary, uri = car_run
    client = MlflowClient(uri)
    designer = CarDesigner(resolution="smoke", compile=False)
    sample, sample_scores = [], []
    for defense, result in summary["defenses"].items():
        designs = pd.read_csv(client.download_artifacts(result["run_id"], "designs.csv"))
        assert len(designs) == result["n_designs"]
        blueprints = [designer.parse(k) for k in designs["design"]]
        seeds = [designer.parse(k) for k in designs["seed"]]
        assert [designer.violations(b) for b in blueprints] == [None] * len(blueprints), defense
        assert designer.constraints(blueprints, seeds).satisfied.all()
        # Keys hold 0.1 mm; the rules are linear, so the rounding moves a row by < 1e-4 of a range at most.
        assert designer.is_feasible(designer.encode(blueprints), tolerance=1e-3).all()
        assert (designs["design"] != designs["seed"]).all()
        assert designs["C_D"].gt(0).all() and designs["m"].between(900, 2500).all()
        sample += blueprints[:2]
        sample_scores += list(designs["true_score"][:2])
    # The true score is the oracle's, recomputed here (two designs per defense, in one batched flow simulation).
    np.testing.assert_allclose(designer.oracle(sample).scores, sample_scores, rtol=1e-5)


def test_each_child_run_holds_the_blueprint_pictures_and_the_scatter(car_run):
    summary, uri = car_run
    client = MlflowClient(uri)
    for result in summary["defenses"].values():
        artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
        assert {"best_designs.png", "flow_best_designs.png", "predicted_vs_true.png", "designs.json",
                "designs.csv"} <= artifacts
        for picture in ("best_designs.png", "flow_best_designs.png", "predicted_vs_true.png"):
            with open(client.download_artifacts(result["run_id"], picture), "rb") as handle:
                assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # Each defense's model is a registered version the summary names; a campaign publishes no alias.
    registered = client.get_registered_model("advdesign-car-surrogate")
    assert not registered.aliases
    versions = {f"models:/advdesign-car-surrogate/{v.version}"
                for v in client.search_model_versions("name = 'advdesign-car-surrogate'")}
    assert {r["model_uri"] for r in summary["defenses"].values()} <= versions


def test_render_draws_the_campaigns_best_designs_from_its_json(car_run, tmp_path, capsys):
    from advdesign.cli import main

    summary, _ = car_run
    campaign_json, png, report = tmp_path / "car.json", tmp_path / "flow.png", tmp_path / "render.json"
    campaign_json.write_text(json.dumps(summary))
    code = main(["render", "--campaign", str(campaign_json), "--n-best", "1", "--resolution", "smoke",
                 "--output", str(png), "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(report.read_text())["rows"]
    assert [row["caption"].split(":")[0] for row in rows] == list(summary["defenses"])  # one row per defense
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000


def test_the_cli_gives_a_car_campaign_the_car_defaults():
    from advdesign.cli import build_parser, campaign_parameters

    quick = campaign_parameters(build_parser().parse_args(["campaign", "--designer", "car", "--quick"]))
    assert quick.designer.settings() == {"objective": "top_speed", "resolution": "coarse", "engine_power_kw": 110.0,
                                         "compile": True, "threads": 1, "max_change_from_seed_m": None}
    assert quick.data.n_labelled + quick.data.n_seed_pool <= 300
    assert (quick.search.step_size, quick.surrogate.eps, quick.surrogate.vat_eps) == (0.05, 0.05, 0.15)
    full = campaign_parameters(build_parser().parse_args(["campaign", "--designer", "car", "--steps", "7",
                                                          "--resolution", "fine"]))
    assert (full.search.steps, full.search.step_size, full.designer.resolution) == (7, 0.05, "fine")
    assert full.data.n_labelled == 1_000
    # The molecule's numbers are untouched by the car presets.
    molecule = campaign_parameters(build_parser().parse_args(["campaign", "--quick"]))
    assert (molecule.data.n_labelled, molecule.search.step_size, molecule.surrogate.eps) == (3_000, 0.2, 0.1)
    assert molecule.designer.settings() == {"objective": "plogp", "similarity_threshold": 0.4, "max_sa": None,
                                            "min_mol_weight": None, "max_mol_weight": None, "min_qed": None,
                                            "keep_smarts": None, "forbid_smarts": ()}
