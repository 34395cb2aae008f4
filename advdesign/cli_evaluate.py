"""``advdesign evaluate``: the robustness evaluation flow from the command line.

Its options are the flow function's parameters (signature and docstring), generated like every subcommand's;
``advdesign.cli`` lists :data:`COMMAND` in its dispatch table, and ``add_parser(subparsers)`` adds it to any parser.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from advdesign.environment import start_local_prefect_api
from advdesign.options import PREFIX, ArgumentParser, Command
from advdesign.report import mlflow_line, report

EXIT_OK, EXIT_ERROR, EXIT_CHECKS_FAILED = 0, 2, 3


def _evaluate_model():
    """The flow function's parameters as a model: the options are generated from its signature and docstring."""
    from advdesign.options import model_from_function
    from flows.robustness_evaluation import robustness_evaluation

    return model_from_function(robustness_evaluation.fn, "EvaluateParameters")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", dest=PREFIX + "quick", action="store_false", default=argparse.SUPPRESS,
                        help="the full settings (the default; the same as --no-quick)")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when a sanity check fails")


COMMAND = Command(
    "evaluate", "attack/defense robustness evaluation (benchmark classifiers or a logged surrogate)",
    lambda args, params: run(args, params), model=_evaluate_model, extra=_options, func=lambda args: run(args),
    description="Train a classifier under each defense and attack it (FGSM, PGD, AutoAttack, random noise, "
    "transfer), or "
    "attack a logged model (--model with --test-set); check the evaluation for the usual failure modes and "
    "log everything to MLflow.")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand (its options and its ``func``) and return its parser."""
    return COMMAND.add_to(subparsers)


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


def check_inputs(params) -> None:
    """The options that can be checked without running anything, each in one line naming it."""
    from pathlib import Path

    from advdesign.report import check_tracking

    if params.model_uri and not params.test_set:
        raise ValueError("--model needs --test-set NPZ (the inputs X and targets y to attack it on)")
    if params.test_set and not params.model_uri:
        raise ValueError("--test-set is read only with --model URI (the benchmark brings its own data)")
    if params.test_set and not Path(params.test_set).is_file():
        raise ValueError(f"--test-set {params.test_set}: file not found")
    for name in ("torch_threads", "autoattack_steps", "square_queries"):
        value = getattr(params, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be ≥ 1, got {value}")
    check_tracking(params.tracking_uri)
    if params.model_uri:
        from tasks.tracking import check_model_exists

        check_model_exists(params.model_uri, params.tracking_uri)


def run(args: argparse.Namespace, params=None) -> int:
    """Run the flow; print one line per failure, never a traceback for a bad input."""
    from prefect.exceptions import ParameterTypeError

    from flows.robustness_evaluation import robustness_evaluation
    from tasks.robustness import validate_eps
    from tasks.tracking import TrackingUnavailable

    try:
        params = COMMAND.parameters(args) if params is None else params
        check_inputs(params)  # before a flow run is even created: bad input costs nothing
        if params.eps is not None:
            validate_eps(params.eps)
        start_local_prefect_api()
        with _run_errors_reported_by_us():
            summary = robustness_evaluation(**params.model_dump())
    except (ValueError, TypeError, FileNotFoundError, TrackingUnavailable, ParameterTypeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"advdesign evaluate: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    failed = [name for name, check in summary["checks"].items() if not check["passed"]]
    report(summary, args.json, lambda s: [f"robustness evaluation: {len(s['checks']) - len(failed)}/"
                                          f"{len(s['checks'])} sanity checks passed",
                                          mlflow_line(s["mlflow"]["tracking_uri"], s["mlflow"]["run_id"])])
    for name in failed:
        print(f"advdesign evaluate: check failed: {name}: {summary['checks'][name]['detail']}", file=sys.stderr)
    return EXIT_CHECKS_FAILED if failed and args.strict else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m advdesign.cli_evaluate``); ``advdesign evaluate`` is the same."""
    parser = ArgumentParser(prog="advdesign")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
