"""The PMO benchmark (Gao et al. 2022, "Sample efficiency matters"): AUC top-10 at 10,000 oracle calls a run.

Per task and run r (data seed r, searcher and surrogate seed r), de novo, everything charged to one budget of
``--max-calls`` oracle calls:

1. ``--n-labelled`` + ``--n-seed-pool`` molecules sampled from MOSES and scored (the surrogate's labels and the pool
   the starts come from: :func:`tasks.pure_stages.prepare_data`);
2. the ``--n-seeds`` best of the pool (default 5) are the starts (:func:`tasks.pure_stages.choose_seeds`, de
   novo: no similarity bound), and every method gets the rest of the budget shared out over them, through the one
   budgeted driver: ``loop/<defense>`` (the design loop, as ``benchmarks/equal_budget.py`` runs it, ``--loop-batch``
   calls per start a round) and the black boxes (``hill-climber``, ``genetic``, ``graph-ga``, ``random``) from the
   same starts, the same labelled calls charged to them too.

The metric is PMO's AUC top-10 (:func:`tasks.search.anytime.auc_top_k`): the mean of the 10 best distinct molecules
against calls, labelling calls included, integrated to 10,000 and divided by it; also the final top-10 mean and the
best. The published AUC top-10 of REINVENT and Graph GA (the PMO leaderboard, mean of 5 runs at 10,000 calls) sit
beside each task. Two differences from PMO's own harness, both against us: the starting population is MOSES, not
ZINC, and a molecule verified for two starts costs two calls where PMO's oracle answers repeats from a cache (the
loop and ``graph-ga`` send no such repeat de novo; ``genetic``, ``hill-climber`` and ``random`` pay for theirs).

    python benchmarks/pmo.py [--tasks albuterol_similarity,median1] [--runs 3] [--methods loop/none,hill-climber]
                             [--json-out benchmarks/results/pmo.json]

The JSON is rewritten after every run; with ``--resume`` the runs already in it are kept and not repeated. Runs
measured side by side (a process per task list) are joined with ``--merge a.json b.json … --json-out OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from designers.objectives.tasks import pmo_scored  # noqa: E402  (the project root is on sys.path from here)
from tasks.search.registry import BLACK_BOXES  # noqa: E402

#: The tasks run by default: RDKit-computable PMO tasks of each kind (similarity, MPO, median, rediscovery). The
#: results file also holds zaleplon_mpo, measured before the script scored it as PMO did, and kept apart as such.
DEFAULT_TASKS = ("albuterol_similarity", "amlodipine_mpo", "median1", "osimertinib_mpo", "celecoxib_rediscovery")

#: AUC top-10 at 10,000 calls published for PMO (Gao et al. 2022, mean of 5 runs), per RDKit-computable task:
#: the leaderboard's per-task pages for the first six, the paper's main table for the rest.
PUBLISHED = {
    "albuterol_similarity": {"REINVENT": 0.882, "Graph GA": 0.838},
    "amlodipine_mpo": {"REINVENT": 0.635, "Graph GA": 0.661},
    "celecoxib_rediscovery": {"REINVENT": 0.713, "Graph GA": 0.630},
    "median1": {"REINVENT": 0.356, "Graph GA": 0.294},
    "osimertinib_mpo": {"REINVENT": 0.837, "Graph GA": 0.831},
    "zaleplon_mpo": {"REINVENT": 0.358, "Graph GA": 0.346},
    "deco_hop": {"REINVENT": 0.666, "Graph GA": 0.619},
    "fexofenadine_mpo": {"REINVENT": 0.784, "Graph GA": 0.760},
    "isomers_c7h8n2o2": {"REINVENT": 0.852, "Graph GA": 0.862},
    "isomers_c9h10n2o2pf2cl": {"REINVENT": 0.642, "Graph GA": 0.719},
    "median2": {"REINVENT": 0.276, "Graph GA": 0.273},
    "mestranol_similarity": {"REINVENT": 0.618, "Graph GA": 0.579},
    "perindopril_mpo": {"REINVENT": 0.537, "Graph GA": 0.538},
    "qed": {"REINVENT": 0.941, "Graph GA": 0.940},
    "ranolazine_mpo": {"REINVENT": 0.760, "Graph GA": 0.728},
    "scaffold_hop": {"REINVENT": 0.560, "Graph GA": 0.517},
    "sitagliptin_mpo": {"REINVENT": 0.021, "Graph GA": 0.433},
    "thiothixene_rediscovery": {"REINVENT": 0.534, "Graph GA": 0.479},
    "troglitazone_rediscovery": {"REINVENT": 0.441, "Graph GA": 0.390},
    "valsartan_smarts": {"REINVENT": 0.178, "Graph GA": 0.000},
}
#: Why a task scored otherwise than PMO scored it cannot be read against the published numbers (such a task is left
#: out of the counts of tasks ahead): runs measured before the tasks with a formula term were scored as PMO did.
NOT_AS_PMO_SCORED = ("scored with GuacaMol's formula term, the true total atom count, where PMO's oracle (TDC 0.3.6) "
                     "read the total off the SMILES text and scores far lower: on 10,000 random MOSES molecules the "
                     "best ten average 0.12 on zaleplon_mpo as PMO scored it, 0.49 as GuacaMol does")
#: The loop's search parameters this script can set (a run with any of them set is a method of its own).
LOOP_OPTIONS = ("graph_share", "decoration_share", "population", "rescorer", "rescore_pool", "max_edits", "beta")
#: The settings that define what a run measures: a resumed file must have been measured under the same ones.
PROTOCOL = ("max_calls", "n_labelled", "n_seed_pool", "n_seeds", "loop_batch")
PUBLISHED_SOURCE = ("PMO leaderboard (pmo-benchmark.github.io, per-task pages; Gao et al. 2022's main table for "
                    "the tasks added later), AUC top-10, 10,000 calls, mean of 5 runs; REINVENT sums 14.196 and "
                    "Graph GA 13.751 over all 23 tasks")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help="PMO tasks (designers.objectives.tasks), or all: the 20 that RDKit can compute")
    parser.add_argument("--runs", type=int, default=3, help="runs r = 0 … runs−1 per task and method")
    parser.add_argument("--run-ids", help="these runs instead (e.g. 3,4: more runs measured in another process, "
                        "joined with --merge)")
    parser.add_argument("--methods", default="loop/none,graph-ga,genetic,hill-climber,random",
                        help="loop/<defense> and black boxes (" + ", ".join(BLACK_BOXES["tokens"]) + ")")
    parser.add_argument("--max-calls", type=int, default=10_000, help="oracle calls a run, labelling included")
    parser.add_argument("--n-labelled", type=int, default=800, help="labelled molecules (surrogate training)")
    parser.add_argument("--n-seed-pool", type=int, default=200, help="scored molecules the starts come from")
    # Few starts: the metric is the top 10 of the whole run, and 9,000 calls shared over 30 starts left each
    # lineage 300 (the hill-climber's albuterol AUC rose from 0.65 to 0.86 with 5 starts, run 0).
    parser.add_argument("--n-seeds", type=int, default=5, help="starts: the best of the pool")
    parser.add_argument("--graph-share", type=float, default=None,
                        help="the loop's share of Graph GA children per incumbent (default: the campaign's, 0.0625)")
    parser.add_argument("--decoration-share", type=float, default=None,
                        help="the loop's share of substituent decorations per incumbent (default: the campaign's, 0)")
    parser.add_argument("--population", type=int, default=None,
                        help="the loop's incumbents per start (default: the campaign's, 4)")
    parser.add_argument("--rescorer", choices=("none", "ridge"), default=None,
                        help="the loop's ranking of its candidates (default: the campaign's, none: the ensemble; "
                             "ridge: a ridge regression on Morgan counts)")
    parser.add_argument("--rescore-pool", type=int, default=None,
                        help="with --rescorer ridge, candidates per start decoded and rescored a round (default: 512)")
    parser.add_argument("--max-edits", type=int, default=None,
                        help="the loop's most token edits in one candidate (default: the campaign's, 1)")
    parser.add_argument("--beta", type=float, default=None,
                        help="the loop's optimism: mean + beta·std (the ensemble's, or with --rescorer ridge the "
                             "ridge's posterior std; default: the campaign's, 0)")
    parser.add_argument("--loop-batch", type=int, default=30,
                        help="the loop's oracle calls per start a round (its batch_per_seed; a round fine-tunes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json-out")
    parser.add_argument("--designs-out", type=Path, metavar="DIR",
                        help="write each run's verified designs (its search table) to DIR/<task>_<method>_r<run>.csv")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="join these files' runs (one protocol, no run in two files) into --json-out; runs nothing")
    args = parser.parse_args(argv)
    if args.merge and not args.json_out:
        parser.error("--merge needs --json-out")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        args.run_ids = sorted({int(r) for r in args.run_ids.split(",")}) if args.run_ids else list(range(args.runs))
    except ValueError:
        parser.error(f"--run-ids: {args.run_ids!r} is not a comma-separated list of run numbers")
    if not args.run_ids or min(args.run_ids) < 0:
        parser.error("--run-ids / --runs: at least one run, numbered from 0")
    from designers.objectives.tasks import PMO_OBJECTIVES, TASKS

    args.tasks = sorted(PMO_OBJECTIVES, key=task_order) if args.tasks.strip() == "all" else \
        [t.strip() for t in args.tasks.split(",") if t.strip()]
    # PMO's QED task is the built-in objective; a pmo:<task> is how a task is scored, not a task of its own.
    known = ("qed", *(t for t in TASKS if not t.startswith("pmo:")))
    for task in args.tasks:
        if task not in known:
            parser.error(f"--tasks: unknown task {task!r}; choose from {', '.join(known)}")
    for method in args.methods:
        if not (method.startswith("loop/") or method in BLACK_BOXES["tokens"]):
            parser.error(f"--methods: unknown method {method!r}; loop/<defense> or one of "
                         + ", ".join(BLACK_BOXES["tokens"]))
    if args.n_labelled + args.n_seed_pool >= args.max_calls:
        parser.error("--max-calls must exceed --n-labelled + --n-seed-pool (the labelling is charged)")
    if args.graph_share is not None and not args.graph_share >= 0:
        parser.error("--graph-share must be ≥ 0")
    if args.decoration_share is not None and not args.decoration_share >= 0:
        parser.error("--decoration-share must be ≥ 0")
    if args.population is not None and args.population < 1:
        parser.error("--population must be ≥ 1")
    if args.rescore_pool is not None and args.rescore_pool < 2:
        parser.error("--rescore-pool must be ≥ 2")
    if args.max_edits is not None and args.max_edits < 1:
        parser.error("--max-edits must be ≥ 1")
    if args.loop_batch < 1:
        parser.error("--loop-batch must be ≥ 1")
    if args.n_seeds > args.n_seed_pool:
        parser.error("--n-seeds must not exceed --n-seed-pool")
    return args


def one_run(task: str, method: str, run: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (task, method, run): label, choose the starts, search the rest of the budget; the AUC top-10."""
    from equal_budget import run_loop  # this script's folder is on sys.path

    from designers import make_designer
    from flows.parameters import CampaignParameters
    from tasks import pure_stages
    from tasks.search.anytime import auc_top_k, call_order, share_budget, top_k_curve
    from tasks.search.black_box import run_black_box

    started = time.perf_counter()
    designer = make_designer("molecule", objective=pmo_scored(task), similarity_threshold=0.0, workers=1)
    base = CampaignParameters.quick("molecule")
    data_params = base.data.model_copy(update={"n_labelled": args.n_labelled, "n_seed_pool": args.n_seed_pool,
                                               "n_unlabelled": 0, "n_seeds": args.n_seeds, "rng_seed": run})
    labelled: list[tuple[list[str], np.ndarray]] = []

    def label(designer, designs, batch_size):  # the labelling calls, in order, for the AUC
        result = pure_stages.label_directly(designer, designs, batch_size)
        labelled.append(([designer.key(d) for d in designs], result.scores))
        return result

    data = pure_stages.prepare_data(designer, data_params, label=label)
    seeds = pure_stages.choose_seeds(designer, data, data_params, label=label)
    labelling_calls = designer.oracle_calls
    budget = share_budget(args.max_calls - labelling_calls, len(seeds.designs))
    r2, fit = None, {}
    if method.startswith("loop/"):
        update = {"calls_per_seed": max(budget), "batch_per_seed": args.loop_batch}
        update.update(_loop_options(args))
        search = base.search.model_copy(update=update)
        table, r2 = run_loop(designer, data, seeds, base.surrogate, search, method.split("/", 1)[1], run, budget)
        if search.rescorer == "ridge":
            fit["rescorer_validation_r2"] = rescorer_r2(designer, data, search.ridge_alpha)
    else:
        table = run_black_box(method, designer, seeds.designs, seeds.scores, budget, seed=run).table
    if args.designs_out:  # the molecules themselves, for a look at what a run found
        args.designs_out.mkdir(parents=True, exist_ok=True)
        name = method_label(method, args).replace("/", "-")
        table.to_csv(args.designs_out / f"{task}_{name}_r{run}.csv", index=False)
    keys = [k for part, _ in labelled for k in part]
    scores = np.concatenate([s for _, s in labelled]) if labelled else np.zeros(0)
    keys, scores = call_order(keys, scores, table)
    distinct: dict[str, float] = {}
    for key, score in zip(keys, np.nan_to_num(scores, nan=0.0)):
        distinct.setdefault(key, float(score))
    best = sorted(distinct.values(), reverse=True)
    tenths = [args.max_calls * i // 10 for i in range(1, 11)]  # where a run gains or loses its area
    return {"auc_top10": auc_top_k(keys, scores, k=10, max_calls=args.max_calls),
            "top10_at_calls": dict(zip(map(str, tenths), np.round(top_k_curve(keys, scores, tenths), 4).tolist())),
            "top10_mean": float(np.mean(best[:10])), "top1": best[0],
            "oracle_calls": int(designer.oracle_calls), "labelling_calls": int(labelling_calls),
            "search_calls": int(len(table)), "distinct_molecules": len(distinct),
            **({} if r2 is None else {"validation_r2": float(r2)}), **fit,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def rescorer_r2(designer, data, alpha: float) -> float:
    """The validation R² of the loop's ridge rescorer (:class:`tasks.ridge.StreamingRidge` on Morgan counts) fitted
    on the labelled training designs alone: the split and data of the ensemble's ``validation_r2``."""
    from tasks.pure_stages import regression_metrics
    from tasks.ridge import StreamingRidge

    ridge = StreamingRidge(alpha)
    ridge.add(designer.fingerprints(designer.decode(data.x_train)), data.y_train)
    return regression_metrics(lambda x: ridge.predict(designer.fingerprints(designer.decode(x))), data.x_val,
                              data.y_val)["validation_r2"]


def method_label(method: str, args: argparse.Namespace) -> str:
    """The method's name in the JSON: the loop's carries the loop options set on the command line
    (``loop/none@graph-share=0``)."""
    options = _loop_options(args)
    if method.startswith("loop/") and options:
        return method + "@" + ",".join(f"{name.replace('_', '-')}={_shown(value)}" for name, value in options.items())
    return method


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _loop_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loop's search parameters set on the command line (the campaign's defaults for the rest)."""
    return {name: getattr(args, name) for name in LOOP_OPTIONS if getattr(args, name) is not None}


def scored_as(task: str, entry: dict[str, Any]) -> str:
    """The objective ``entry``'s runs were scored with (files from before it was recorded: the task itself)."""
    return entry.get("objective", task)


def summarise(result: dict[str, Any]) -> None:
    """Per task and method: AUC top-10 mean ± std over runs; per method the comparable tasks on which it beats
    each published method (and both)."""
    wins: dict[str, dict[str, int]] = {}
    result["not_comparable"] = {task: NOT_AS_PMO_SCORED for task, entry in result["tasks"].items()
                                if scored_as(task, entry) != pmo_scored(task)}
    for task, entry in result["tasks"].items():
        for method, block in entry["methods"].items():
            aucs = [r["auc_top10"] for r in block["runs"].values()]
            block["auc_top10_mean"] = float(np.mean(aucs))
            block["auc_top10_std"] = float(np.std(aucs))
            block["n_runs"] = len(aucs)
            count = wins.setdefault(method, {**{name: 0 for name in next(iter(PUBLISHED.values()))}, "both": 0})
            if task in result["not_comparable"]:
                continue
            published = entry.get("published", {})
            for name, value in published.items():
                count[name] = count.get(name, 0) + int(block["auc_top10_mean"] > value)
            count["both"] += int(bool(published) and block["auc_top10_mean"] > max(published.values()))
    result["tasks_ahead_of_published"] = wins


#: The order of a merged file's tasks: the default tasks first, then the rest of PMO's in the published table's.
TASK_ORDER = {task: i for i, task in enumerate(dict.fromkeys((*DEFAULT_TASKS, *PUBLISHED)))}


def task_order(task: str) -> int:
    return TASK_ORDER.get(task, len(TASK_ORDER))


def merge(paths: list[Path]) -> dict[str, Any]:
    """One result from files measured under the same protocol: every task's runs of every method, tasks in the
    default order, re-summarised; a differing protocol or a run found in two files is refused in one line."""
    results = [json.loads(path.read_text()) for path in paths]
    first, joined = results[0], {}
    for path, result in zip(paths, results):
        for name in PROTOCOL:
            if result["settings"].get(name) != first["settings"].get(name):
                raise SystemExit(f"--merge: {path} was measured with --{name.replace('_', '-')} "
                                 f"{result['settings'].get(name)}, {paths[0]} with {first['settings'].get(name)}")
        for task, entry in result["tasks"].items():
            # The published numbers are the script's reference data, not a measurement: the current ones.
            into = joined.setdefault(task, {"objective": scored_as(task, entry), "methods": {},
                                            "published": PUBLISHED.get(task, entry.get("published", {}))})
            if scored_as(task, entry) != into["objective"]:
                raise SystemExit(f"--merge: {path} scored {task} as {scored_as(task, entry)}, an earlier file as "
                                 f"{into['objective']}")
            for method, block in entry["methods"].items():
                runs = into["methods"].setdefault(method, {"runs": {}})["runs"]
                for run, measured in block["runs"].items():
                    if run in runs:
                        raise SystemExit(f"--merge: {task} {method} run {run} is in two files ({path})")
                    runs[run] = measured
    tasks = sorted(joined, key=task_order)
    result = {**first, "published_source": PUBLISHED_SOURCE,
              "settings": {name: first["settings"][name] for name in PROTOCOL},
              "tasks": {task: joined[task] for task in tasks}}
    for entry in result["tasks"].values():
        for block in entry["methods"].values():
            block["runs"] = dict(sorted(block["runs"].items(), key=lambda item: int(item[0])))
    summarise(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.merge:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(merge(args.merge), indent=1) + "\n")
        return
    import torch

    import advdesign.environment  # noqa: F401  (quiet library defaults)

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"benchmark": "PMO (Gao et al. 2022)", "metric": "AUC top-10",
                              "published_source": PUBLISHED_SOURCE, "tasks": {}}
    if args.resume and args.json_out and args.json_out.is_file():
        result = json.loads(args.json_out.read_text())
        stored = result.get("settings", {})
        for name in PROTOCOL:
            if name in stored and stored[name] != getattr(args, name):
                raise SystemExit(f"--resume: {args.json_out} was measured with --{name.replace('_', '-')} "
                                 f"{stored[name]}, not {getattr(args, name)}; its runs would not be comparable")
        for task in args.tasks:  # checked before any run: a stale task would stop the loop halfway
            if task in result["tasks"] and scored_as(task, result["tasks"][task]) != pmo_scored(task):
                raise SystemExit(f"--resume: {args.json_out} scored {task} as "
                                 f"{scored_as(task, result['tasks'][task])}, not as PMO did ({pmo_scored(task)}); "
                                 "its runs would not be comparable")
    # The protocol alone: the methods and their options are in the method labels, and a file grown over several
    # invocations (each method with its own options) keeps one measurement's settings.
    result["settings"] = {name: getattr(args, name) for name in PROTOCOL}
    result["target"] = "ahead of Graph GA and REINVENT on the majority of the tasks run"

    def write() -> None:
        summarise(result)
        text = json.dumps(result, indent=1)
        if args.json_out:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(text + "\n")

    for task in args.tasks:
        entry = result["tasks"].setdefault(task, {"objective": pmo_scored(task), "methods": {}})
        entry["published"] = PUBLISHED.get(task, {})
        for method in args.methods:
            runs = entry["methods"].setdefault(method_label(method, args), {"runs": {}})["runs"]
            for run in args.run_ids:
                if str(run) in runs:
                    continue
                runs[str(run)] = one_run(task, method, run, args)
                print(f"{task} {method} run {run}: AUC top-10 {runs[str(run)]['auc_top10']:.3f} "
                      f"({runs[str(run)]['wall_seconds']:.0f} s)", flush=True)
                write()
    write()
    if not args.json_out:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
