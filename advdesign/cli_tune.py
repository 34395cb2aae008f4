"""``advdesign tune`` and ``advdesign baselines``: Optuna surrogate tuning and black-box baselines.

Kept apart from ``advdesign/cli.py`` (the ``cli_evaluate`` pattern): each subcommand is added by its
``add_*_parser(subparsers)`` and run by the ``func`` it sets, ``run_tune(args)`` or ``run_baselines(args)``.
The data options and the designer's constraints are the campaign's, so the same numbers give the same data,
the same seeds and the same constraints. Both take ``--designer`` (molecule or car) and its options; an option of
the other designer is an error (``advdesign.cli._sections``), as in every subcommand.
"""

from __future__ import annotations

import argparse

from advdesign.cli import _check_tracking, _sections, _validated, _write


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--designer", choices=["molecule", "car"], default="molecule", help="design domain")
    p.add_argument("--quick", action="store_true",
                   help="the campaign's quick data (3,000 labelled molecules; 192 car blueprints)")
    p.add_argument("--n-labelled", type=int, help="designs labelled by the oracle for training")
    p.add_argument("--n-unlabelled", type=int, help="unlabelled designs for VAT")
    p.add_argument("--n-pool", type=int, help="held-out labelled designs the seeds are drawn from")
    p.add_argument("--n-seeds", type=int, help="seeds drawn from the pool")
    p.add_argument("--seeds", metavar="FILE", help="seed designs, one per line (default: lowest-scoring of a pool)")
    p.add_argument("--rng-seed", type=int, help="seed of data sampling and training")
    p.add_argument("--objective", choices=["plogp", "qed"], help="molecule objective")
    p.add_argument("--similarity", type=float, help="δ: minimum similarity to the seed (molecules)")
    p.add_argument("--max-sa", type=float, help="upper bound on SA score (molecules)")
    p.add_argument("--resolution", choices=["coarse", "fine", "finest"], help="flow lattice (cars; default coarse)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite in the project)")
    p.add_argument("--experiment", default="advdesign", help="MLflow experiment name")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON (default: print it)")


def add_tune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tune", help="Optuna (TPE) tuning of a surrogate's lr, width, defense and ε by validation error "
        "or design transfer rate",
        description="Each trial trains a surrogate on the campaign's data and is a nested MLflow run under one "
        "parent; the study is stored in SQLite (default: optuna.db beside the MLflow store), so running again "
        "with the same --study-name resumes it. The ranges of ε and width are the designer's.")
    _add_data_options(p)
    p.add_argument("--trials", type=int, help="trials to add (default 20; quick 8)")
    p.add_argument("--study-name", help="Optuna study name, resumed if it exists "
                   "(default: advdesign-<designer>-<metric>)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<MLflow store folder>/optuna.db)")
    p.add_argument("--defenses", default="none,fgsm,vat", help="defenses the study chooses from")
    p.add_argument("--epochs", type=int, help="training epochs per trial (default: the campaign's; quick "
                   "molecules 5)")
    p.add_argument("--metric", default="validation_mae",
                   choices=["validation_mae", "validation_mse", "transfer_rate", "oracle_improvement_mean"],
                   help="the objective: validation error (minimised), or, from a design stage every trial, the "
                   "fraction of predicted-better designs the oracle confirms or the mean true gain per seed "
                   "(maximised)")
    p.add_argument("--budget", type=int, help="oracle calls of each trial's design stage (design metrics only; "
                   "default: the campaign's)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.set_defaults(func=run_tune)
    return p


def add_baselines_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "baselines", help="black-box search on the true oracle (random / TPE SELFIES token edits) at the "
        "campaign's budget",
        description="Random search and TPE over SELFIES token edits of each seed (molecules) or CMA-ES on the "
        "blueprint's box encoding (cars), on the campaign's seeds and "
        "constraints; only constraint-satisfying designs are scored and the oracle calls never exceed --budget.")
    _add_data_options(p)
    p.add_argument("--methods", help="comma-separated: random, tpe (molecules, the default); cmaes (cars, the default)")
    p.add_argument("--budget", type=int, help="oracle calls for all seeds together (default: the campaign's)")
    p.add_argument("--max-edits", type=int, default=3, help="at most this many token edits per proposal")
    p.add_argument("--seed", type=int, default=0, help="random seed of the searches")
    p.set_defaults(func=run_baselines)
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add both subcommands."""
    add_tune_parser(subparsers)
    add_baselines_parser(subparsers)


def run_tune(args: argparse.Namespace) -> int:
    from flows.tune import DESIGN_OBJECTIVES, TuneParameters

    if args.budget is not None and args.metric not in DESIGN_OBJECTIVES:
        raise ValueError(f"--budget sets the design stage of --metric {' or '.join(DESIGN_OBJECTIVES)}; "
                         f"--metric {args.metric} designs nothing")
    s = _sections(args)
    # Epochs and trials a plain or quick tune defaults to (quick molecules train shorter than their campaign).
    preset = TuneParameters.quick(args.designer) if args.quick else TuneParameters(designer={"name": args.designer})
    values = {"designer": s["designer"], "data": s["data"],
              "surrogate": {**s["surrogate"], "epochs": args.epochs or preset.surrogate.epochs},
              "search": s["search"],
              "defenses": tuple(d.strip() for d in args.defenses.split(",") if d.strip()),
              "n_trials": args.trials or preset.n_trials, "study_name": args.study_name,
              "storage": args.storage, "objective": args.metric, "seed": args.seed,
              "experiment": s["experiment"], "tracking_uri": s["tracking_uri"]}
    params = _validated(TuneParameters, **values)
    _check_tracking(params.tracking_uri)
    from flows.tune import tune

    summary = tune(params)
    _write(summary, args.json)
    if args.json:
        print(f"best {summary['objective']} {summary['best_value']:.4f} (trial {summary['best_trial']} of "
              f"{summary['n_trials']}): {summary['best_params']}; study {summary['study_name']} in "
              f"{summary['study_storage']}; MLflow run {summary['mlflow']['parent_run_id']}")
    return 0


def run_baselines(args: argparse.Namespace) -> int:
    from flows.baselines import BaselineParameters

    s = _sections(args)
    params = _validated(
        BaselineParameters, designer=s["designer"], data=s["data"],
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else None,
        budget=args.budget if args.budget is not None else s["search"]["budget"], max_edits=args.max_edits,
        seed=args.seed, experiment=s["experiment"], tracking_uri=s["tracking_uri"])
    _check_tracking(params.tracking_uri)
    from flows.baselines import baselines

    summary = baselines(params)
    _write(summary, args.json)
    if args.json:
        for method, r in summary["methods"].items():
            print(f"{method:7} success {r['success_rate']:.2f}  true gain {r['oracle_improvement_mean']:.2f}  "
                  f"oracle calls {r['oracle_calls']}/{summary['budget']}")
    return 0
