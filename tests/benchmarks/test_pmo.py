"""The PMO benchmark's bookkeeping on a tiny budget: every call charged (labelling included, never past the
budget), AUC and top-10 read off the same calls, published numbers beside each task, a resumed run repeating no
finished run, and bad arguments refused in one line (benchmarks/pmo.py)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # pmo.py imports equal_budget's run_loop from its folder
SPEC = importlib.util.spec_from_file_location("pmo", BENCHMARKS / "pmo.py")
pmo = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pmo)

TINY = ["--tasks", "albuterol_similarity", "--runs", "1", "--max-calls", "160", "--n-labelled", "60",
        "--n-seed-pool", "20", "--n-seeds", "4"]


def test_a_tiny_run_charges_every_call_and_resumes_without_repeating(tmp_path, single_torch_thread):
    out = tmp_path / "pmo.json"
    pmo.main([*TINY, "--methods", "loop/none,hill-climber", "--json-out", str(out)])
    result = json.loads(out.read_text())
    task = result["tasks"]["albuterol_similarity"]
    assert task["published"] == {"REINVENT": 0.882, "Graph GA": 0.838}
    for method in ("loop/none", "hill-climber"):
        run = task["methods"][method]["runs"]["0"]
        assert run["labelling_calls"] == 80 and run["oracle_calls"] == run["labelling_calls"] + run["search_calls"]
        assert 80 < run["oracle_calls"] <= 160
        assert 0 < run["auc_top10"] < run["top10_mean"] <= run["top1"] <= 1  # the curve only rises to its end
        assert task["methods"][method]["auc_top10_mean"] == run["auc_top10"]
    assert set(result["tasks_ahead_of_published"]) == {"loop/none", "hill-climber"}
    before = out.read_text()
    pmo.main([*TINY, "--methods", "loop/none,hill-climber", "--json-out", str(out), "--resume"])
    assert json.loads(out.read_text())["tasks"] == json.loads(before)["tasks"]  # nothing was run again
    before = out.read_text()
    with pytest.raises(SystemExit, match="--n-labelled 60, not 50"):  # other labelling: not the same measurement
        pmo.main([*TINY, "--n-labelled", "50", "--methods", "hill-climber", "--json-out", str(out), "--resume"])
    assert out.read_text() == before


def test_a_task_not_scored_as_pmo_scored_it_is_left_out_of_the_counts():
    def entry(published, auc, **objective):
        return {**objective, "published": published, "methods": {"m": {"runs": {"0": {"auc_top10": auc}}}}}

    # zaleplon_mpo from before the objective was recorded: GuacaMol's formula term, not PMO's.
    result = {"tasks": {"albuterol_similarity": entry({"REINVENT": 0.882, "Graph GA": 0.838}, 0.85),
                        "zaleplon_mpo": entry({"REINVENT": 0.358, "Graph GA": 0.346}, 0.5)}}
    pmo.summarise(result)
    assert result["tasks_ahead_of_published"]["m"] == {"REINVENT": 0, "Graph GA": 1, "both": 0}
    assert list(result["not_comparable"]) == ["zaleplon_mpo"]
    result["tasks"]["zaleplon_mpo"]["objective"] = "pmo:zaleplon_mpo"  # scored as PMO did: it counts
    pmo.summarise(result)
    assert result["tasks_ahead_of_published"]["m"] == {"REINVENT": 1, "Graph GA": 2, "both": 1}
    assert result["not_comparable"] == {}


def test_a_task_scored_otherwise_is_neither_resumed_nor_merged(tmp_path):
    stale = {"settings": {name: getattr(pmo.parse_args(TINY), name) for name in pmo.PROTOCOL},
             "tasks": {"zaleplon_mpo": {"methods": {"m": {"runs": {"0": {"auc_top10": 0.5}}}}}}}
    old = tmp_path / "old.json"
    old.write_text(json.dumps(stale))
    before = old.read_text()
    with pytest.raises(SystemExit, match="scored zaleplon_mpo as zaleplon_mpo, not as PMO did"):
        pmo.main([*TINY, "--tasks", "zaleplon_mpo", "--json-out", str(old), "--resume"])
    assert old.read_text() == before
    new = tmp_path / "new.json"
    stale["tasks"]["zaleplon_mpo"]["objective"] = "pmo:zaleplon_mpo"
    stale["tasks"]["zaleplon_mpo"]["methods"]["m"]["runs"] = {"1": {"auc_top10": 0.3}}
    new.write_text(json.dumps(stale))
    with pytest.raises(SystemExit, match="as pmo:zaleplon_mpo, an earlier file as zaleplon_mpo"):
        pmo.merge([old, new])


def test_the_loop_with_another_graph_share_is_a_method_of_its_own(tmp_path, single_torch_thread):
    out = tmp_path / "pmo.json"
    pmo.main([*TINY, "--methods", "loop/none", "--graph-share", "0", "--json-out", str(out),
              "--designs-out", str(tmp_path / "designs")])
    result = json.loads(out.read_text())
    assert list(result["tasks"]["albuterol_similarity"]["methods"]) == ["loop/none@graph-share=0"]
    import pandas as pd

    designs = pd.read_csv(tmp_path / "designs" / "albuterol_similarity_loop-none@graph-share=0_r0.csv")
    run = result["tasks"]["albuterol_similarity"]["methods"]["loop/none@graph-share=0"]["runs"]["0"]
    assert len(designs) == run["search_calls"] and designs["design"].is_unique
    assert set(result["tasks_ahead_of_published"]["loop/none@graph-share=0"]) == {"REINVENT", "Graph GA", "both"}


@pytest.mark.parametrize("argv, culprit", [(["--tasks", "nope"], "--tasks"), (["--methods", "gflownet"], "--methods"),
                                           (["--max-calls", "50"], "--max-calls"), (["--n-seeds", "99"], "--n-seeds"),
                                           (["--loop-batch", "0"], "--loop-batch"),
                                           (["--graph-share", "-1"], "--graph-share"),
                                           (["--decoration-share", "-1"], "--decoration-share"),
                                           (["--run-ids", "3,x"], "--run-ids"), (["--runs", "0"], "--runs")])
def test_bad_arguments_name_the_option(argv, culprit, capsys):
    with pytest.raises(SystemExit):
        pmo.parse_args([*TINY, *argv])
    assert culprit in capsys.readouterr().err


def test_a_run_with_the_ridge_rescorer_records_both_surrogates_fit_and_the_report_shows_them(tmp_path,
                                                                                             single_torch_thread):
    out = tmp_path / "pmo.json"
    pmo.main([*TINY, "--methods", "loop/none", "--rescorer", "ridge", "--json-out", str(out)])
    result = json.loads(out.read_text())
    run = result["tasks"]["albuterol_similarity"]["methods"]["loop/none@rescorer=ridge"]["runs"]["0"]
    assert -1 < run["rescorer_validation_r2"] <= 1 and run["validation_r2"] <= 1
    assert run["oracle_calls"] == run["labelling_calls"] + run["search_calls"] <= 160
    import report  # benchmarks/report.py, on sys.path from here

    text = report.pmo(result)
    assert f"| albuterol_similarity | {run['validation_r2']:.2f} (1) | {run['rescorer_validation_r2']:.2f} (1) |" in text


def test_every_rdkit_computable_pmo_task_runs_qed_included():
    from designers.objectives.tasks import PMO_OBJECTIVES

    assert pmo.parse_args([*TINY, "--tasks", ",".join(PMO_OBJECTIVES)]).tasks == list(PMO_OBJECTIVES)
    assert set(PMO_OBJECTIVES) == set(pmo.PUBLISHED)  # every task has its published numbers beside it
    everything = pmo.parse_args([*TINY, "--tasks", "all"]).tasks
    assert len(everything) == 20 and set(everything) == set(PMO_OBJECTIVES) and everything[0] == "albuterol_similarity"


def test_run_ids_pick_the_runs_measured():
    assert pmo.parse_args(TINY).run_ids == [0]
    assert pmo.parse_args([*TINY, "--run-ids", "4,3,4"]).run_ids == [3, 4]


def test_the_loop_options_name_the_method_numbers_and_words_alike():
    args = pmo.parse_args([*TINY, "--graph-share", "0.25", "--rescorer", "ridge", "--beta", "1"])
    assert pmo.method_label("loop/none", args) == "loop/none@graph-share=0.25,rescorer=ridge,beta=1"
    assert pmo.method_label("hill-climber", args) == "hill-climber"


def _file(path, settings, tasks):
    path.write_text(json.dumps({"benchmark": "PMO (Gao et al. 2022)", "settings": settings, "tasks": tasks}))
    return path


def test_runs_measured_side_by_side_merge_into_one_summary_and_conflicts_are_refused(tmp_path, capsys):
    settings = {"max_calls": 10_000, "n_labelled": 200, "n_seed_pool": 100, "n_seeds": 5, "loop_batch": 30}

    def entry(task, runs):
        return {task: {"published": pmo.PUBLISHED[task],
                       "methods": {"m": {"runs": {str(r): {"auc_top10": auc} for r, auc in runs.items()}}}}}

    # deco_hop measured before its published numbers were in the script: the merge brings them in.
    later = {"deco_hop": {**entry("deco_hop", {0: 0.7})["deco_hop"], "published": {}}}
    a = _file(tmp_path / "a.json", settings, {**later, **entry("median1", {0: 0.25}),
                                              **entry("albuterol_similarity", {1: 0.9})})
    b = _file(tmp_path / "b.json", {**settings, "tasks": ["x"]}, entry("albuterol_similarity", {0: 0.8}))
    out = tmp_path / "out.json"
    pmo.main(["--merge", str(a), str(b), "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert list(result["tasks"]) == ["albuterol_similarity", "median1", "deco_hop"]  # defaults first, not the files'
    assert result["tasks"]["deco_hop"]["published"] == {"REINVENT": 0.666, "Graph GA": 0.619}
    albuterol = result["tasks"]["albuterol_similarity"]["methods"]["m"]
    assert list(albuterol["runs"]) == ["0", "1"] and albuterol["auc_top10_mean"] == pytest.approx(0.85)
    assert albuterol["n_runs"] == 2 and result["settings"] == settings
    assert result["tasks_ahead_of_published"]["m"] == {"REINVENT": 1, "Graph GA": 2, "both": 1}

    with pytest.raises(SystemExit, match="deco_hop m run 0 is in two files"):
        pmo.merge([a, a])
    other = _file(tmp_path / "c.json", {**settings, "n_labelled": 800}, entry("median1", {1: 0.3}))
    with pytest.raises(SystemExit, match="c.json was measured with --n-labelled 800"):
        pmo.merge([a, other])
    with pytest.raises(SystemExit):
        pmo.parse_args(["--merge", str(a)])
    assert "--merge needs --json-out" in capsys.readouterr().err
