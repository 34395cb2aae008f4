"""The README's benchmark tables are rendered from benchmarks/results/*.json, and the README is in step with them."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("benchmark_report", ROOT / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


@pytest.mark.parametrize("path, full", [("README.md", False), ("docs/benchmarks.md", True)])
def test_readme_and_record_show_the_latest_results(path, full):
    text = (ROOT / path).read_text()
    section = text.split(report.BEGIN)[1].split(report.END)[0].strip()
    assert section == report.render(full).strip(), \
        f"{path} is stale: run `python benchmarks/report.py --readme README.md --record docs/benchmarks.md`"


def test_the_readme_shows_a_selection_and_the_record_every_table():
    readme, record = report.render(), report.render(full=True)
    assert "**0. The design loop on the protocol's 800 seeds" in readme and "**PMO**" in readme
    assert "**2a′. Equal budget, molecules, a handful of calls**" in record
    assert "**2a′. Equal budget, molecules, a handful of calls**" not in readme
    assert all(name in {n for n, *_ in report.SECTIONS} for name in report.README_TABLES)


def test_tables_carry_the_measured_numbers():
    plogp = json.loads((report.RESULTS / "constrained_plogp.json").read_text())
    fgsm = plogp["deltas"]["0.4"]["defenses"]["fgsm"]
    text = report.render(full=True)
    assert f"{fgsm['successful_improvement_mean']:.2f} ± {fgsm['successful_improvement_std']:.2f}" in text
    assert "| δ = 0.4 | *MolDQN* (published, ZINC) | 3.37 ± 1.62 | 100.0 % |" in text
    molecule = json.loads((report.RESULTS / "equal_budget_molecule.json").read_text())
    largest = str(molecule["checkpoints"][-1])
    random_at_largest = molecule["methods"]["random"]["improvement"][largest]
    assert f"{random_at_largest['mean']:+.2f} ± {random_at_largest['std']:.2f}" in text
    assert "| tpe | " in text and " — |" in text  # TPE capped at 100 calls: no value beyond, not a zero


def test_an_unmeasured_benchmark_names_its_command(tmp_path, monkeypatch):
    shutil.copy(report.RESULTS / "speed.json", tmp_path / "speed.json")
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    text = report.render(full=True)
    assert "*Not measured yet* (`benchmarks/results/constrained_plogp.json` is absent)" in text
    assert "python benchmarks/equal_budget.py --domain car" in text
    assert "**3. Speed**" in text


def test_only_the_marked_section_is_rewritten():
    text = f"# title\nbefore\n{report.BEGIN}\nold table\n{report.END}\nafter\n"
    assert report.replace_between_markers(text, "new") == f"# title\nbefore\n{report.BEGIN}\nnew\n{report.END}\nafter\n"
    with pytest.raises(SystemExit, match="expected one"):
        report.replace_between_markers("no markers here", "new")


def test_the_pmo_fit_table_says_where_r2_is_undefined():
    # valsartan_smarts: no run finds the SMARTS, every label is 0 and R² is NaN; it is not averaged in.
    assert report._mean_r2([float("nan")] * 3) == "undefined, labels all equal (3)"
    assert report._mean_r2([0.5, float("nan"), 0.7]) == "0.60 (2)"


def test_paired_draws_show_each_draw_and_the_mean_difference(tmp_path, monkeypatch):
    def draw(seed, plain, coms):
        improvement = lambda values: {str(c): {"mean": v} for c, v in zip((10, 30), values)}  # noqa: E731
        return {"settings": {"data_seed": seed}, "checkpoints": [10, 30], "n_seeds": 10, "repeats": 3,
                "score_unit": "penalized logP", "labelling_calls": 3000,
                "methods": {"loop/none": {"improvement": improvement(plain)},
                            "loop/coms": {"improvement": improvement(coms)}}}

    for seed, plain, coms in ((1, (1.0, 2.0), (1.5, 2.5)), (0, (1.0, 2.0), (0.9, 2.3))):
        (tmp_path / f"equal_budget_molecule_plain_coms_draw{seed}.json").write_text(json.dumps(draw(seed, plain, coms)))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    text = report.render(full=True)
    assert "| 0 | +1.00 / +0.90 (-0.10) | +2.00 / +2.30 (+0.30) |" in text  # draws in data-seed order
    assert "| 1 | +1.00 / +1.50 (+0.50) | +2.00 / +2.50 (+0.50) |" in text
    # Differences −0.1 and +0.5: mean +0.2, s.e. 0.3; +0.3 and +0.5: mean +0.4, s.e. 0.1.
    assert "| mean difference ± s.e. over 2 draws | **+0.20 ± 0.30**, ahead on 1 of 2 | " \
           "**+0.40 ± 0.10**, ahead on 2 of 2 |" in text
