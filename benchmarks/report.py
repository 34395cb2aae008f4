"""The benchmark tables, rendered from the measured results in ``benchmarks/results/``.

Numbers are never typed in by hand: ``make bench`` runs the benchmarks (each writes its JSON into
``benchmarks/results/``) and then this script, which rewrites the part of a markdown file between the two markers
``<!-- bench:begin -->`` and ``<!-- bench:end -->``: in README.md the tables that say where each target stands, in
docs/benchmarks.md the full record (every table, ablations and earlier measurements included). A result that has
not been measured yet is named with the command that measures it, never filled in.

    python benchmarks/report.py                                                  # print the README's tables
    python benchmarks/report.py --readme README.md --record docs/benchmarks.md   # rewrite both in place
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def load(name: str) -> dict[str, Any] | None:
    """One results file, or for a pattern (``*``) every file it matches, by file stem; ``None`` when absent."""
    if "*" in name:
        found = {path.stem: json.loads(path.read_text()) for path in sorted(RESULTS.glob(name))}
        return found or None
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def missing(name: str, command: str) -> str:
    return f"*Not measured yet* (`benchmarks/results/{name}` is absent): `{command}`."


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# -- 1. constrained penalized logP --------------------------------------------------------------------------------
def constrained_plogp(result: dict[str, Any]) -> str:
    rows = []
    for delta, block in result["deltas"].items():
        for defense, m in block["defenses"].items():
            rows.append([f"δ = {delta}", defense,
                         f"{m['successful_improvement_mean']:.2f} ± {m['successful_improvement_std']:.2f}",
                         pct(m["success_rate"]), pct(m["feasible_design_rate"]),
                         f"{m['oracle_improvement_mean']:+.2f}",
                         f"{m['search_oracle_calls_per_seed']:.2f} + {m['labelling_oracle_calls_per_seed']:.2f}",
                         f"{m['validation_r2']:.2f}", f"{m['designs_qed_mean']:.2f}"])
        for method, p in result["published"].items():
            q = p["delta"][delta]
            rows.append([f"δ = {delta}", f"*{method}* (published, ZINC)",
                         f"{q['improvement_mean']:.2f} ± {q['improvement_std']:.2f}", pct(q["success_rate"]),
                         "", "", "thousands", "", ""])
    data = result["campaign"]["data"]
    return (f"**1. Constrained penalized logP** (the JT-VAE protocol: the {data['n_seeds']} lowest-plogP of "
            f"{data['n_seed_pool']:,} held-out MOSES molecules; full campaign defaults, {data['n_labelled']:,} "
            f"labelled; MLflow run `{result['mlflow']['parent_run_id'][:8]}…`; commit `{result['git_commit']}`)\n\n"
            + table(["δ", "defense", "improvement ± std (successful seeds)", "success", "feasible design found",
                     "mean gain, all seeds", "oracle calls / seed: search + labelling", "val. R²", "QED"], rows)
            + f"\n\n{result['published_note']}")


# -- 2. equal budget ----------------------------------------------------------------------------------------------
def equal_budget(result: dict[str, Any], title: str) -> str:
    checkpoints = result["checkpoints"]
    rows = []
    for method, m in result["methods"].items():
        cells = []
        for c in checkpoints:
            v = m["improvement"][str(c)]
            single = len(m["wall_seconds"]) == 1  # one repeat: no spread to show
            cells.append("—" if v["mean"] is None else f"{v['mean']:+.2f}" if single
                         else f"{v['mean']:+.2f} ± {v['std']:.2f}")
        spent = sum(m["calls_per_seed_mean"]) / len(m["calls_per_seed_mean"])
        r2 = m.get("validation_r2")
        rows.append([method, *cells, f"{spent:.0f}", "" if r2 is None else f"{sum(r2) / len(r2):.2f}"])
    device = result.get("device") or "cpu"
    where = device if device.startswith("cuda") else f"CPU, torch threads: {result.get('torch_threads', '?')}"
    repeats = f"{result['repeats']} repeats"
    if not result.get("complete", True):  # a run stopped early: say how many repeats each method finished
        done = sorted({len(m["wall_seconds"]) for m in result["methods"].values()})
        repeats = f"{'–'.join(map(str, done))} of {result['repeats']} repeats done (the run was stopped early)"
    return (f"**{title}** ({result['n_seeds']} starts × {repeats}, improvement in "
            f"{result['score_unit']} at C oracle calls **per start**, mean ± std over repeats; labelling "
            f"({result['labelling_calls']:,} calls, shared by every start) "
            f"{'charged' if result['labelling_charged'] else 'not charged'}; {where}; "
            f"{result['wall_seconds'] / 60:.0f} min)\n\n"
            + table(["method", *[f"C = {c}" for c in checkpoints], "calls spent / start", "val. R²"], rows))


def paired_draws(results: dict[str, dict[str, Any]], title: str, plain: str = "loop/none",
                 other: str = "loop/coms") -> str:
    """``other`` against ``plain`` over data draws (each file one draw: its own labels and starts): per draw the two
    improvements and their difference at every C, then the mean difference ± its standard error over the draws."""
    draws = sorted(results.values(), key=lambda r: r["settings"]["data_seed"])
    checkpoints = [str(c) for c in draws[0]["checkpoints"]]
    gaps = {c: [] for c in checkpoints}
    rows = []
    for result in draws:
        cells = []
        for c in checkpoints:
            a, b = (result["methods"][m]["improvement"][c]["mean"] for m in (plain, other))
            gaps[c].append(b - a)
            cells.append(f"{a:+.2f} / {b:+.2f} ({b - a:+.2f})")
        rows.append([result["settings"]["data_seed"], *cells])
    summary = []
    for c in checkpoints:
        gap = np.array(gaps[c])
        error = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else float("nan")
        summary.append(f"**{gap.mean():+.2f} ± {error:.2f}**, ahead on {int((gap > 0).sum())} of {len(gap)}")
    rows.append([f"mean difference ± s.e. over {len(draws)} draws", *summary])
    first = draws[0]
    return (f"**{title}** ({first['n_seeds']} starts × {first['repeats']} repeats a draw, improvement in "
            f"{first['score_unit']} at C oracle calls **per start**, mean over repeats, {plain} / {other} "
            f"({other} − {plain}); labelling ({first['labelling_calls']:,} calls) not charged)\n\n"
            + table(["data draw", *[f"C = {c}" for c in checkpoints]], rows))


# -- 3. speed -----------------------------------------------------------------------------------------------------
def speed(result: dict[str, Any]) -> str:
    search = result["search"]
    rows = []
    for batch, b in search["batches"].items():
        rows.append([batch, f"{b['search']['design_steps_per_second']:,.0f}",
                     f"{b['search']['designs_per_second']:,.1f}", f"{b['search']['gflop_per_second']:.1f}",
                     f"{b['matmul_gflop_per_second']:.1f}", f"{b['search']['ratio_to_matmul']:.3f}",
                     f"{b['bare']['ratio_to_matmul']:.3f}", pct(b["bookkeeping_share_of_search_time"])])
    oracle, orchestration = result["oracle"], result["orchestration"]
    campaign = orchestration["campaign"]
    return (f"**3. Speed** (torch {result['torch_version']}, {result['torch_threads']} thread, "
            f"{result['cpu_count']} cores; {search['forward_flops_per_design']:,} FLOPs per design forward, the "
            f"input gradient as much again; a design is {search['steps']} search steps)\n\n"
            + table(["batch", "design·steps/s", "designs/s", "GFLOP/s", "matmul GFLOP/s (same run)",
                     "ratio", "bare forward+backward ratio", "time outside forward+backward"], rows)
            + f"\n\nOracles: penalized logP {oracle['molecule']['molecules_per_second']:,} molecules/s "
              f"({oracle['molecule']['workers']} workers); cars {oracle['car']['seconds_per_blueprint']:.2f} s a "
              f"blueprint (coarse, batch {oracle['car']['batch']}, compiled; "
              f"{oracle['car']['calls_per_second']:.2f} calls/s). Prefect orchestration in a quick molecule "
              f"campaign: {campaign['orchestration_seconds']:.2f} s of {campaign['wall_seconds']:.1f} s = "
              f"**{pct(campaign['orchestration_share'])}** (flow engine {campaign['flow_engine_seconds']:.2f} s, "
              f"task engine {campaign['task_engine_seconds']:.2f} s over {campaign['task_runs']} task runs); "
              f"the ephemeral API's cold start {orchestration['startup']['api_startup_seconds']:.0f} s comes "
              f"before it.")


def lbm_gpu(result: dict[str, Any]) -> str:
    m = result["mlups"]
    per = result["seconds_per_blueprint"]
    return (f"**Car oracle on a GPU** ({result['device']}): copy bandwidth {result['bandwidth_gb_s']:,.0f} GB/s; "
            f"compiled D2Q9 at batch 256 {m['compiled_batch256']['mlups']:,.0f} MLUPS "
            f"({m['compiled_batch256']['ratio_to_bound']:.2f} of the bandwidth bound); "
            f"{per['coarse']:.3f} s a coarse blueprint at batch {per['coarse_batch']} "
            f"(~{1 / per['coarse']:.0f} blueprints/s).")


# -- 0. the design loop against the hill-climber ----------------------------------------------------------------
def design_loop(result: dict[str, Any], title: str = "0. The design loop against the hill-climber",
                targets: bool = True) -> str:
    """``targets``: show the issue's targets (they are set for the protocol's size, not for smaller runs)."""
    settings = result["settings"]
    rows = []
    for delta, block in result["deltas"].items():
        target = block.get("target") if targets else None
        # The loop's defenses first, the black box after them (rows added by later runs included).
        for method, m in sorted(block["methods"].items(), key=lambda item: not item[0].startswith("loop-")):
            if "error" in m:
                rows.append([f"δ = {delta}", method, f"failed: {m['error']}", "", "", "", "", "", ""])
                continue
            curve = ", ".join(f"{c}: {v:+.2f}" for c, v in m["anytime"].items())
            charged = (f"{m['search_oracle_calls_per_seed_mean']:.1f} + {m['labelling_oracle_calls_per_seed']:.0f}"
                       if m["labelling_oracle_calls_per_seed"] else f"{m['search_oracle_calls_per_seed_mean']:.1f}")
            rows.append([f"δ = {delta}", method, f"**{m['improvement_mean']:+.2f}** ± {m['improvement_std']:.2f}",
                         pct(m["success_rate"]), charged, curve,
                         "" if m.get("designs_qed_mean") is None else f"{m['designs_qed_mean']:.2f}",
                         "" if m.get("probe_apgd_mae") is None
                         else f"{m['probe_clean_mae']:.2f} → {m['probe_apgd_mae']:.2f}",
                         "" if target is None else f"≥ {target:.1f}"])
        for name, paper in result.get("published", {}).items():
            q = paper["delta"].get(delta)
            if q:
                rows.append([f"δ = {delta}", f"*{name}* (published, ZINC; successful seeds only)",
                             f"{q['improvement_mean']:.2f} ± {q['improvement_std']:.2f}", pct(q["success_rate"]),
                             "thousands" if name == "MolDQN" else "", "", "", "", ""])
    return (f"**{title}** (`benchmarks/design_loop.py`; constrained penalized "
            f"logP, the {settings['n_seeds']} lowest-plogP seeds of the held-out MOSES pool, ≤ "
            f"{settings['calls_per_seed']} search calls a seed, 5 a round, the same seeds, constraints and driver for "
            f"every method; the loop's surrogates learn from {settings['n_labelled']:,} labelled molecules, charged "
            "as `search + labelling` calls a seed; improvement over **all** seeds, 0 for a seed without a better "
            "feasible design; *surrogate MAE* is the ensemble mean's validation error clean → under APGD at the "
            "training ε, the campaign's worst-case probe):\n\n"
            + table(["δ", "method", "improvement", "success", "calls / seed", "anytime (calls: improvement)",
                     "QED", "surrogate MAE", "target"], rows))


def loop_round_speed(result: dict[str, Any]) -> str:
    return (f"**Design-loop round speed** (`benchmarks/loop_round_speed.py`, {result['threads']} threads, load "
            f"{result['load_average_at_start']:.1f} at start): {result['seeds']} seeds × "
            f"{result['candidates_per_seed']} candidates, {result['members']} members — proposals and exact scoring "
            f"{result['proposals_and_exact_scoring_seconds']:.2f} s (target ≤ "
            f"{result['targets']['proposals_and_exact_scoring_seconds']:.0f} s for 800 × 512)"
            + _bfloat16_scoring(result.get("bfloat16")) + ", screening "
            f"(decoding, constraints) {result['screening_seconds']:.1f} s, fine-tuning "
            f"{result['finetune_seconds']:.1f} s, against {result['oracle_seconds_per_round']:.1f} s of the "
            f"molecule oracle per round: the loop's own share of a round is "
            f"{pct(result['loop_share_of_round'])} (target ≤ {pct(result['targets']['loop_share_of_round'])})"
            + _share_at_a_costlier_oracle(result) + ".")


def _share_at_a_costlier_oracle(result: dict[str, Any]) -> str:
    if "oracle_ms_per_call_for_target_share" not in result:
        return ""
    return (f"; per oracle call ({result['seeds']} × {result['batch_per_seed']} a round) the loop spends "
            f"{result['loop_ms_per_oracle_call']:.1f} ms of its own against the oracle's "
            f"{result['oracle_ms_per_call']:.2f} ms, so its share is ≤ {pct(result['targets']['loop_share_of_round'])}"
            f" from an oracle of {result['oracle_ms_per_call_for_target_share']:.0f} ms a call on")


def _bfloat16_scoring(fast: dict[str, Any] | None) -> str:
    if not fast:
        return ""
    return (f"; {fast['proposals_and_exact_scoring_seconds']:.2f} s with the hidden layers in bfloat16 "
            f"(`scoring_precision`; predictions within {fast['max_abs_difference']:.4f} of float32's, "
            f"{fast['mean_abs_difference']:.5f} on average, against a spread of {fast['prediction_std']:.2f}; "
            f"{pct(fast['same_picks'])} of the seeds' top-q picks unchanged)")


# -- PMO -----------------------------------------------------------------------------------------------------------
def pmo(result: dict[str, Any], title: str = "PMO") -> str:
    settings = result["settings"]
    tasks = result["tasks"]
    methods = list(dict.fromkeys(m for entry in tasks.values() for m in entry["methods"]))
    published = list(dict.fromkeys(p for entry in tasks.values() for p in entry.get("published", {})))
    apart = result.get("not_comparable", {})
    rows, sums = [], {m: 0.0 for m in methods + published}
    for task, entry in tasks.items():
        row = [f"{task}*" if task in apart else task]
        for method in methods:
            block = entry["methods"].get(method)
            row.append("" if not block or "auc_top10_mean" not in block else
                       f"{block['auc_top10_mean']:.3f} ± {block['auc_top10_std']:.3f} ({block['n_runs']})")
            sums[method] += block.get("auc_top10_mean", 0.0) if block else 0.0
        for name in published:
            value = entry.get("published", {}).get(name)
            row.append("" if value is None else f"{value:.3f}")
            sums[name] += value or 0.0
        rows.append(row)
    # A method not run on every task has no comparable sum.
    measured = {m: sum(m in entry["methods"] for entry in tasks.values()) for m in methods}
    rows.append([f"**sum over {len(tasks)} tasks**",
                 *(f"**{sums[m]:.3f}**" if measured.get(m, len(tasks)) == len(tasks)
                   else f"({measured[m]} of {len(tasks)} tasks run)" for m in methods + published)])
    ahead = result.get("tasks_ahead_of_published", {})
    comparable = {m: sum(m in entry["methods"] for task, entry in tasks.items() if task not in apart) for m in methods}
    rows.append(["comparable tasks ahead of REINVENT / Graph GA / both",
                 *(f"{ahead.get(m, {}).get('REINVENT', 0)} / {ahead.get(m, {}).get('Graph GA', 0)} / "
                   f"{ahead.get(m, {}).get('both', 0)} of {comparable[m]}" for m in methods),
                 *([""] * len(published))])
    footnotes = "".join(f"\n\n\\* {task}: not comparable with the published numbers ({why}); left out of the counts."
                        for task, why in apart.items())
    return (f"**{title}** (`benchmarks/pmo.py`; Gao et al. 2022's AUC top-10 at {settings['max_calls']:,} oracle calls a "
            f"run, labelling included: {settings['n_labelled']} labelled + {settings['n_seed_pool']} pool molecules "
            f"from MOSES, then the {settings['n_seeds']} best of the pool searched de novo with the rest of the "
            f"budget; mean ± std over runs (count); published: {result['published_source']}; target: "
            f"{result['target']}):\n\n"
            + table(["task", *methods, *(f"*{p}* (published)" for p in published)], rows) + footnotes
            + _pmo_fit(tasks))


def _mean_r2(values: list[float]) -> str:
    # R² is undefined where every label is the same (valsartan_smarts: all 0): say so rather than print nan.
    finite = [v for v in values if np.isfinite(v)]
    return f"{np.mean(finite):.2f} ({len(finite)})" if finite else f"undefined, labels all equal ({len(values)})"


def _pmo_fit(tasks: dict[str, Any]) -> str:
    """Per task, the validation R² of the loop's surrogates on the labelled data, mean over its runs: the one-hot
    ensemble's and, where runs used it, the ridge rescorer's on Morgan counts."""
    rows = []
    for task, entry in tasks.items():
        runs = [r for block in entry["methods"].values() for r in block["runs"].values() if "validation_r2" in r]
        ridge = [r["rescorer_validation_r2"] for r in runs if "rescorer_validation_r2" in r]
        if runs:
            rows.append([task, _mean_r2([r["validation_r2"] for r in runs]), _mean_r2(ridge) if ridge else ""])
    if not rows:
        return ""
    return ("\n\nThe loop's surrogates on the same labelled data (validation R², mean over the loop's runs (count)):"
            "\n\n" + table(["task", "one-hot ensemble", "ridge rescorer, Morgan counts"], rows))


#: (results file, the command that measures it, renderer, its arguments), in the record's order. A section without
#: a command is an extra measurement, shown when present (the GPU runs need a machine this project cannot assume).
SECTIONS: list[tuple[str, str | None, Callable[..., str], tuple]] = [
    ("design_loop_protocol.json", "python benchmarks/design_loop.py --defenses fgsm "
     "--json-out benchmarks/results/design_loop_protocol.json",
     design_loop, ("0. The design loop on the protocol's 800 seeds, against the hill-climber",)),
    ("design_loop_plogp.json", "python benchmarks/design_loop.py --n-seeds 100 --json-out "
     "benchmarks/results/design_loop_plogp.json",
     design_loop, ("0a. The design loop against the hill-climber, 100 seeds, plain and FGSM surrogates",)),
    ("design_loop_defenses.json", "python benchmarks/design_loop.py --n-seeds 40 --n-labelled 3600 --deltas 0.4 "
     "--defenses none,fgsm,trades,coms --json-out benchmarks/results/design_loop_defenses.json",
     design_loop, ("0′. Every surrogate defense in the design loop, from little data", False)),
    ("loop_round_speed.json", "python benchmarks/loop_round_speed.py --json-out benchmarks/results/loop_round_speed.json",
     loop_round_speed, ()),
    ("constrained_plogp.json", "python benchmarks/constrained_plogp.py --json-out benchmarks/results/constrained_plogp.json",
     constrained_plogp, ()),
    ("equal_budget_molecule.json", "python benchmarks/equal_budget.py --checkpoints 10,30,100,300 --loop none,fgsm "
     "--output-dir benchmarks/results",
     equal_budget, ("2a. Equal budget, molecules",)),
    ("equal_budget_molecule_small.json", None, equal_budget, ("2a′. Equal budget, molecules, a handful of calls",)),
    ("equal_budget_molecule_loop.json", "python benchmarks/equal_budget.py --checkpoints 10,30,100,300 --loop none "
     "--defenses '' --baselines '' --no-orchestration --threads 1 --output-dir benchmarks/results "
     "--name equal_budget_molecule_loop",
     equal_budget, ("2a″. Equal budget, molecules: the design loop with its adaptive split (same starts, data and "
                    "budget as 2a, whose black-box rows it is read against: they have no surrogate, so the loop's "
                    "change cannot move them)",)),
    ("equal_budget_molecule_c1000.json", None, equal_budget,
     ("2a‴. Equal budget, molecules, to 1,000 calls a start: the design loop against the black boxes "
      "(`equal_budget.py --checkpoints 10,30,100,300,1000 --loop none --defenses '' --baselines random,hill-climber "
      "--no-orchestration --name equal_budget_molecule_c1000`)",)),
    ("equal_budget_molecule_defenses.json", None, equal_budget,
     ("2a⁗. Equal budget, molecules: the loop with each defense on the current code (commit `65dcd81`; same starts "
      "and data as 2a–2a‴; `equal_budget.py --checkpoints 10,30,100 --loop none,fgsm,vat --defenses '' "
      "--baselines '' --no-orchestration --name equal_budget_molecule_defenses`)",)),
    ("equal_budget_molecule_vat_unlabelled.json", None, equal_budget,
     ("2a⁗′. Equal budget, molecules: VAT with 20,000 unlabelled molecules beside plain, both on one data draw "
      "(commit `3ffaf60`; 3,000 labels as in 2a⁗, but the larger draw makes other labels and starts, so read the "
      "rows against each other, not against 2a⁗; `equal_budget.py --checkpoints 10,30,100 --loop none,vat "
      "--n-unlabelled 20000 --defenses '' --baselines '' --no-orchestration --name "
      "equal_budget_molecule_vat_unlabelled`)",)),
    ("equal_budget_molecule_vat_unlabelled_d1.json", None, equal_budget,
     ("2a⁗″. The same on a second data draw (`--data-seed 1`: other labels and starts; otherwise as 2a⁗′)",)),
    ("equal_budget_molecule_trades_coms.json", None, equal_budget,
     ("2a⁵. Equal budget, molecules: the TRADES and COMs loops beside plain, all three on the current code (commit "
      "`499e413`; same starts and data as 2a⁗; `equal_budget.py --checkpoints 10,30,100 --loop none,trades,coms "
      "--defenses '' --baselines '' --no-orchestration --name equal_budget_molecule_trades_coms`)",)),
    ("equal_budget_molecule_coms_d1.json", None, equal_budget,
     ("2a⁵′. Plain and COMs on a second data draw (`--data-seed 1`: other labels and starts, not those of 2a⁗″, "
      "whose 20,000 unlabelled change the draw; `--loop none,coms`, otherwise as 2a⁵)",)),
    ("equal_budget_molecule_coms_d2.json", None, equal_budget,
     ("2a⁵″. Plain and COMs on a third data draw (`--data-seed 2`; otherwise as 2a⁵′)",)),
    ("equal_budget_molecule_plain_coms_draw*.json", None, paired_draws,
     ("2a⁶. Plain and COMs over seven data draws, one commit (`37ac229`; `--data-seed 0` … `6`, otherwise as 2a⁵′, "
      "two processes side by side; draws 3–6 decided before any was seen)",)),
    ("equal_budget_car.json", "python benchmarks/equal_budget.py --domain car --output-dir benchmarks/results",
     equal_budget, ("2b. Equal budget, cars",)),
    ("equal_budget_car_c300.json", None, equal_budget,
     ("2b′. Equal budget, cars, to 300 calls a start on the CPU, with the design loop "
      "(`equal_budget.py --domain car --checkpoints 10,30,100,300 --loop none,vat --lockstep --no-orchestration "
      "--name equal_budget_car_c300`)",)),
    ("equal_budget_car_loop.json", None, equal_budget,
     ("2b″. Equal budget, cars: the design loop with TuRBO's counters (same starts, data and budget as 2b′, whose "
      "loop rows halved the trust region after every dry round, commit `edaa9a0`; its other rows have no loop, so "
      "the change cannot move them; `equal_budget.py --domain car --checkpoints 10,30,100,300 --loop none,vat "
      "--defenses '' --baselines '' --no-orchestration --name equal_budget_car_loop`)",)),
    ("equal_budget_car_vat.json", None, equal_budget,
     ("2b‴. Equal budget, cars: VAT with its smoothness term in target standard deviations (commit `f5c485b`; the "
      "VAT rows of 2b–2c and of the molecule tables weighed it target_std² times more; same starts, data and budget "
      "as 2b′ and 2b″; `equal_budget.py --domain car --checkpoints 10,30,100,300 --loop vat --defenses vat "
      "--baselines '' --no-orchestration --name equal_budget_car_vat`)",)),
    ("equal_budget_car_unranked.json", None, equal_budget,
     ("2b⁗. Equal budget, cars: the loop with random trust-region points sent unranked beside the ensemble's "
      "ranking, split by the Thompson bandit (commit `e38fef6`; same starts, data and budget as 2b′–2b‴; "
      "`equal_budget.py --domain car --checkpoints 10,30,100,300 --loop none,vat --defenses '' --baselines '' "
      "--no-orchestration --name equal_budget_car_unranked`)",)),
    ("equal_budget_car_gpu.json", None, equal_budget, ("2c. Equal budget, cars, on a GPU",)),
    ("equal_budget_car_gpu_loop.json", None, equal_budget,
     ("2d. Equal budget, cars, to C = 1000 with the design loop (commit `5e5d1aa` on a lent H200 machine: CMA-ES and "
      "random in lockstep on the GPU oracle; each loop run its own process on the CPU oracle, side by side, joined "
      "with `--merge`; the VAT loops were stopped by the device's time at 908 / 856 / 946 calls a start and read "
      "from their per-round checkpoints, so their C = 1000 is missing; same starts and data as 2b′–2c)",)),
    ("equal_budget_car_vat_c1000.json", None, equal_budget,
     ("2d′. Equal budget, cars: the VAT loop to C = 1000 on this CPU (commit `2f3417e`, the three repeats as three "
      "processes side by side, joined with `--merge`; same starts and data as 2b′–2d; `equal_budget.py --domain car "
      "--checkpoints 10,30,100,300,1000 --loop vat --defenses '' --baselines '' --repeat-ids r --resume-dir DIR "
      "--no-orchestration`)",)),
    ("equal_budget_car_c1000_cpu.json", None, equal_budget,
     ("2d″. Equal budget, cars to C = 1000, every method on this CPU on one search code (commit `516c3c2`, repeats "
      "8–15 on `d8022c3`, whose search is the same; 16 repeats, 0–4, then 5–7, then 8–15 for every method alike, "
      "the loops one process a repeat or two, CMA-ES and random in lockstep in one, side by side and "
      "joined with `--merge`; same starts and data as 2b′–2d′; `equal_budget.py --domain car --repeats 16 --checkpoints "
      "10,30,100,300,1000 --defenses '' --no-orchestration` with `--loop vat --baselines '' --repeat-ids r`, "
      "`--loop none --baselines '' --repeat-ids r`, `--loop '' --baselines cmaes,random --lockstep`)",)),
    ("equal_budget_car_elite_ablation.json", None, equal_budget,
     ("2d‴. Ablation, cars: the VAT loop with elite-Gaussian proposals (commit `99e9c7c`, reverted in `9ae5e7e`: per "
      "start, 32 more candidates a round drawn around its best design from the spread of its 24 best) beside the "
      "loop without them (the `loop/vat` repeats 0–2 of 2d″); same starts, data and budget as 2d″)",)),
    ("pmo.json", "python benchmarks/pmo.py --json-out benchmarks/results/pmo.json", pmo, ()),
    ("pmo_300_labels.json", "make bench-pmo-300", pmo,
     ("PMO with 300 labelling calls, the loop alone, on all 20 RDKit-computable tasks (`make bench-pmo-300`: "
      "`pmo.py --tasks all --n-labelled 200 --n-seed-pool 100 --methods loop/none --rescorer ridge`, processes side "
      "by side joined with `--merge`; every task scored as PMO scored it; `loop/none`, ranking with its ensemble, "
      "without `--rescorer` on three tasks; the black boxes, which need no labels, are in the table above on the "
      "first five)",)),
    ("speed.json", "python benchmarks/speed.py --threads 1", speed, ()),
    ("lbm_throughput_h100.json", None, lbm_gpu, ()),
]


#: The tables the README shows: where each of the design loop's and PMO's targets stands today. The record shows all.
README_TABLES = {"design_loop_protocol.json", "design_loop_plogp.json", "loop_round_speed.json",
                 "equal_budget_molecule_c1000.json", "equal_budget_molecule_trades_coms.json",
                 "equal_budget_car_c1000_cpu.json", "pmo.json",
                 "pmo_300_labels.json"}


def render(full: bool = False) -> str:
    """The README's tables, or with ``full`` every table (docs/benchmarks.md)."""
    parts = []
    for name, command, section, args in SECTIONS:
        if not full and name not in README_TABLES:
            continue
        result = load(name)
        if result:
            parts.append(section(result, *args))
        elif command:
            parts.append(missing(name, command))
    return "\n\n".join(parts)


def replace_between_markers(text: str, body: str, where: str = "README") -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{where}: expected one {BEGIN} before one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite this file's tables (the README's selection) in place")
    parser.add_argument("--record", type=Path, help="rewrite this file's tables (all of them) in place")
    args = parser.parse_args(argv)
    if not (args.readme or args.record):
        print(render())
    for path, full in ((args.readme, False), (args.record, True)):
        if path:
            path.write_text(replace_between_markers(path.read_text(), render(full), where=str(path)))


if __name__ == "__main__":
    main()
