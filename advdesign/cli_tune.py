"""``advdesign tune`` and ``advdesign baselines``: Optuna surrogate tuning and black-box baselines.

Their options are their flows' parameters (``flows.tune.TuneParameters``, ``flows.baselines.BaselineParameters``)
on the campaign's presets, so the same numbers give the same data, the same seeds and the same constraints; an
option of the other designer is an error, as in every subcommand. ``advdesign.cli`` lists both in its dispatch
table (:data:`COMMANDS`); this module does not import it.
"""

from __future__ import annotations

import argparse
from typing import Any

from advdesign.environment import start_local_prefect_api
from advdesign.options import Command, UsageError, flag, given
from advdesign.report import check_seeds, check_tracking, mlflow_line, report


def _tune_model():
    from flows.tune import TuneParameters

    return TuneParameters


def _baselines_model():
    from flows.baselines import BaselineParameters

    return BaselineParameters


def tune_preset(designer: str, quick: bool) -> dict[str, Any]:
    """The campaign's data and training; quick: the quick campaign's data, shorter molecule training, 8 trials."""
    from flows.tune import TuneParameters

    return (TuneParameters.quick(designer) if quick else TuneParameters(designer={"name": designer})).model_dump()


def baselines_preset(designer: str, quick: bool) -> dict[str, Any]:
    """The campaign's data and seeds; the budget is the campaign's search budget."""
    from flows.baselines import BaselineParameters
    from flows.parameters import CampaignParameters

    campaign = CampaignParameters.defaults(designer, quick=quick)
    return BaselineParameters(designer=campaign.designer, data=campaign.data, budget=campaign.search.budget
                              ).model_dump()


def run_tune(args: argparse.Namespace, params: Any) -> int:
    from flows.tune import DESIGN_OBJECTIVES

    design_flags = [flag(path) for path in given(args) if path.startswith("search.")]
    if design_flags and params.objective not in DESIGN_OBJECTIVES:
        raise UsageError(f"{design_flags[0]} sets the design stage of --metric {' or '.join(DESIGN_OBJECTIVES)}; "
                         f"--metric {params.objective} designs nothing")
    check_tracking(params.tracking_uri)
    if params.objective in DESIGN_OBJECTIVES:
        check_seeds(params)
    if params.storage:
        from tasks.tracking import check_database_url

        check_database_url(params.storage, "--storage (Optuna)")
    start_local_prefect_api()
    import flows.tune

    summary = flows.tune.tune(params)
    report(summary, args.json, tune_lines)
    return 0


def tune_lines(summary: dict[str, Any]) -> list[str]:
    if not summary:
        return []
    best = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary["best_params"].items())
    return [f"tuned a {summary['designer']} surrogate: best {summary['objective']} {summary['best_value']:.4f} "
            f"({summary['direction']}d) at trial {summary['best_trial']} of {summary['n_trials']}: {best}",
            f"study {summary['study_name']} in {summary['study_storage']} (run again to add trials)",
            mlflow_line(summary["mlflow"]["tracking_uri"], summary["mlflow"]["parent_run_id"],
                        summary["mlflow"]["experiment_id"])]


def run_baselines(args: argparse.Namespace, params: Any) -> int:
    check_tracking(params.tracking_uri)
    check_seeds(params)
    start_local_prefect_api()
    from flows.baselines import baselines

    report(baselines(params), args.json, baselines_lines)
    return 0


def baselines_lines(summary: dict[str, Any]) -> list[str]:
    rows = [f"black-box baselines on the {summary['designer']} oracle, {summary['budget']} oracle calls each "
            f"({summary['calls_per_seed']} a seed)"]
    for method, r in summary["methods"].items():
        rows.append(f"{method:12} success {r['success_rate']:.2f}  true gain {r['oracle_improvement_mean']:.2f}  "
                    f"oracle calls {r['oracle_calls']}/{summary['budget']}")
    m = summary["mlflow"]
    rows.append(mlflow_line(m["tracking_uri"], m["parent_run_id"], m["experiment_id"]))
    return rows


COMMANDS = {
    "tune": Command(
        "tune", "Optuna (TPE) tuning of a surrogate's lr, width, defense and ε by validation error or design "
        "transfer rate", run_tune, model=_tune_model, preset=tune_preset,
        description="Each trial trains a surrogate on the campaign's data and is a nested MLflow run under one "
        "parent; the study is stored in SQLite (default: optuna.db beside the MLflow store), so running again "
        "with the same --study-name resumes it. The ranges of ε and width are the designer's; the search options "
        "set the design stage of --metric transfer_rate or oracle_improvement_mean (oracle calls per trial: "
        "--budget)."),
    "baselines": Command(
        "baselines", "black-box search on the true oracle (hill-climber / GA / random / TPE on SELFIES tokens, "
        "Graph GA on molecular graphs; CMA-ES "
        "and random perturbations for cars) at the campaign's budget", run_baselines, model=_baselines_model,
        preset=baselines_preset,
        description="A mutation hill-climber, a SELFIES GA (crossover between seeds only de novo), random "
        "search and TPE over SELFIES token edits of each seed and Graph GA (Jensen 2019) on its graph (molecules) "
        "or CMA-ES and random Gaussian "
        "perturbations of the blueprint's box encoding (cars), on the campaign's seeds and constraints, run by the "
        "one budgeted driver; only constraint-satisfying designs are scored and no seed's oracle calls exceed its share of --budget (or --calls-per-seed)."),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add both subcommands (each sets ``func``)."""
    for command in COMMANDS.values():
        command.add_to(subparsers)
