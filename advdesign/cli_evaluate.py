"""``advdesign evaluate``: the robustness evaluation flow from the command line.

Kept apart from ``advdesign/cli.py`` so the evaluation owns its options; ``cli.py`` wires it in with
``cli_evaluate.add_parser(subparsers)`` and dispatches to ``cli_evaluate.run(args)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from advdesign import environment

EXIT_OK, EXIT_ERROR, EXIT_CHECKS_FAILED = 0, 2, 3


def _eps_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"ε must be comma-separated numbers, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand (its options and its ``run`` as ``func``) and return its parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="attack/defense robustness evaluation (benchmark classifiers or a logged surrogate)",
        description="Train a classifier under each defense and attack it (FGSM, PGD, random noise, transfer), or "
        "attack a logged model (--model with --test-set); check the evaluation for the usual failure modes and "
        "log everything to MLflow.",
    )
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                        help="offline classification benchmark (default: digits)")
    parser.add_argument("--model", dest="model_uri", metavar="URI",
                        help="MLflow model URI to evaluate instead (models:/NAME@ALIAS, runs:/ID/model, models:/m-ID)")
    parser.add_argument("--test-set", metavar="NPZ", help="with --model: .npz holding X (in [0, 1]) and y")
    parser.add_argument("--defenses", default="none,fgsm,pgd,vat",
                        help="comma-separated defenses to train on the benchmark (default: none,fgsm,pgd,vat)")
    parser.add_argument("--eps", type=_eps_list, metavar="E1,E2,…",
                        help="L∞ radii in input units, each in (0, 1] (default 0.05,0.1,0.2,0.3; quick: 0.1,0.3)")
    effort = parser.add_mutually_exclusive_group()
    effort.add_argument("--quick", action="store_true", help="small, fast settings (smoke runs, tests)")
    effort.add_argument("--full", dest="quick", action="store_false", help="the full settings (default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="write the summary JSON here")
    parser.add_argument("--tracking-uri", default=environment.tracking_uri(),
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the project's SQLite store)")
    parser.add_argument("--experiment", default="robustness-evaluation", help="MLflow experiment name")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when a sanity check fails")
    parser.set_defaults(func=run)
    return parser


@contextmanager
def _run_errors_reported_by_us() -> Iterator[None]:
    """Prefect logs a failing flow's exception with its traceback; for the errors this command explains in one
    line (bad input), that would bury the line. Only those loggers, only during the call; the flow run's state in
    Prefect still records the failure."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run(args: argparse.Namespace) -> int:
    """Run the flow; print one line per failure, never a traceback for a bad input."""
    from flows.robustness_evaluation import robustness_evaluation
    from prefect.exceptions import ParameterTypeError

    from tasks.robustness import validate_eps
    from tasks.tracking import TrackingUnavailable

    defenses = [d.strip() for d in args.defenses.split(",") if d.strip()]
    try:
        if args.eps is not None:
            validate_eps(args.eps)  # before a flow run is even created: bad input costs nothing
        with _run_errors_reported_by_us():
            summary = robustness_evaluation(
                dataset=args.dataset, model_uri=args.model_uri, test_set=args.test_set, defenses=defenses,
                eps=args.eps, quick=args.quick, seed=args.seed, tracking_uri=args.tracking_uri,
                experiment=args.experiment,
            )
    except (ValueError, TypeError, FileNotFoundError, TrackingUnavailable, ParameterTypeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"advdesign evaluate: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2))
    failed = [name for name, check in summary["checks"].items() if not check["passed"]]
    for name in failed:
        print(f"advdesign evaluate: check failed: {name}: {summary['checks'][name]['detail']}", file=sys.stderr)
    print(f"run {summary['mlflow']['run_id']} in {summary['mlflow']['tracking_uri']}: "
          f"{len(summary['checks']) - len(failed)}/{len(summary['checks'])} checks passed")
    return EXIT_CHECKS_FAILED if failed and args.strict else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m advdesign.cli_evaluate``) until ``advdesign/cli.py`` dispatches to it."""
    parser = argparse.ArgumentParser(prog="advdesign")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
