"""advdesign: gradient-based design on adversarially robust surrogates. Each subcommand runs one Prefect flow on
the embedded defaults (Prefect's ephemeral API, MLflow in SQLite in the project); its options are the flow's
parameters (flows/parameters.py), so `advdesign COMMAND --help` lists every one with its default and choices."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

from advdesign import environment, interrupts
from advdesign.environment import start_local_prefect_api
from advdesign.options import ArgumentParser, Command
from advdesign.report import check_json_path, check_seeds, check_tracking, mlflow_line, number, report

# --- presets: what each subcommand's parameters start from, before the flags --------------------------------


def campaign_preset(designer: str, quick: bool) -> dict[str, Any]:
    from flows.parameters import CampaignParameters

    return CampaignParameters.defaults(designer, quick=quick).model_dump()


def _sections(designer: str, quick: bool, *names: str) -> dict[str, Any]:
    values = campaign_preset(designer, quick)
    return {name: values[name] for name in names}


def train_preset(designer: str, quick: bool) -> dict[str, Any]:
    from flows.train_surrogate import TrainParameters

    return TrainParameters(**_sections(designer, quick, "designer", "data", "surrogate")).model_dump()


def design_preset(designer: str, quick: bool) -> dict[str, Any]:
    from flows.design_search import DesignParameters

    # model_uri is required: --model always replaces this placeholder.
    return DesignParameters(model_uri="models:/-", **_sections(designer, quick, "designer", "data", "search")
                            ).model_dump()


def _train_model():
    from flows.train_surrogate import TrainParameters

    return TrainParameters


def _design_model():
    from flows.design_search import DesignParameters

    return DesignParameters


def _campaign_model():
    from flows.parameters import CampaignParameters

    return CampaignParameters


# --- what the terminal shows -------------------------------------------------------------------------------------


def objective_name(designer: Any) -> str:
    """The quantity the oracle scores (higher is better), for a summary's header: a built-in's label, a task's or
    a user callable's name (``module:function@version``)."""
    from designers.objectives import label

    return label(designer.objective)


def campaign_lines(summary: dict[str, Any], params: Any) -> list[str]:
    results = summary["defenses"]
    n_seeds = next((r["n_seeds"] for r in results.values() if "n_seeds" in r), "?")
    rows = [f"{summary['designer']} campaign: objective {objective_name(params.designer)}, higher is better; "
            f"{n_seeds} seeds" + (f", {params.rounds} rounds" if params.rounds > 1 else ""),
            f"{'defense':8} {'R²':>6} {'success':>8} {'transfer':>9} {'true gain':>10} {'pred gain':>10} {'gap':>7}"]
    for defense, r in results.items():
        if "error" in r:
            rows.append(f"{defense:8} failed: {r['error']}")
            continue
        gap = {"gap": r["improvement_gap"]} if "improvement_gap" in r else {
            "gap": r["predicted_improvement_mean"] - r["oracle_improvement_mean"]} if (
            "predicted_improvement_mean" in r and "oracle_improvement_mean" in r) else {}
        rows.append(f"{defense:8} {number(r, 'validation_r2'):>6} {number(r, 'success_rate'):>8} "
                    f"{number(r, 'transfer_rate'):>9} {number(r, 'oracle_improvement_mean'):>10} "
                    f"{number(r, 'predicted_improvement_mean'):>10} {number(gap, 'gap'):>7}")
    m = summary["mlflow"]
    rows += ["gap: predicted minus true gain per seed (large: the search found the surrogate's errors, not better "
             "designs)",
             f"oracle calls {summary['oracle_calls']}, {summary['wall_seconds']:.0f} s",
             mlflow_line(m["tracking_uri"], m["parent_run_id"], m["experiment_id"])]
    return rows


def train_lines(result: dict[str, Any], params: Any) -> list[str]:
    return [f"trained a {params.defense} surrogate ({params.designer.name}): validation R² "
            f"{number(result, 'validation_r2', '.3f')}, MAE {number(result, 'validation_mae', '.3f')}",
            f"registered as {result['model_uri']}",
            mlflow_line(result["tracking_uri"], result["run_id"])]


def design_lines(result: dict[str, Any], params: Any) -> list[str]:
    return [f"designed from {result.get('n_seeds', '?')} seeds with {params.model_uri} "
            f"(objective {objective_name(params.designer)}): {result.get('n_designs', '?')} designs verified, "
            f"success {number(result, 'success_rate')}, transfer {number(result, 'transfer_rate')}, true gain "
            f"{number(result, 'oracle_improvement_mean')} (predicted {number(result, 'predicted_improvement_mean')})",
            mlflow_line(result["tracking_uri"], result["run_id"])]


# --- running --------------------------------------------------------------------------------------------------


def task_runner(kind: str, address: str | None):
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ValueError("--task-runner dask needs prefect-dask: pip install prefect-dask") from None
        return DaskTaskRunner(address=address) if address else DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=4)


def run_campaign(args: argparse.Namespace, params: Any) -> int:
    check_tracking(params.tracking_uri)
    check_seeds(params)
    start_local_prefect_api()  # after the checks: a bad input fails at once, not after the API's start-up
    from flows.campaign import campaign

    # The preset (--quick) also as the flow's top-level parameter, as the deployments set it: the flow run in the
    # Prefect UI reads like a deployment's (params are already on it, so nothing changes).
    summary = campaign.with_options(task_runner=task_runner(args.task_runner, args.dask_address))(
        params, preset=params.preset)
    report(summary, args.json, lambda s: campaign_lines(s, params))
    return 1 if any("error" in r for r in summary["defenses"].values()) else 0


def run_train(args: argparse.Namespace, params: Any) -> int:
    check_tracking(params.tracking_uri)
    start_local_prefect_api()
    from flows.train_surrogate import train_surrogate

    report(train_surrogate(params), args.json, lambda r: train_lines(r, params))
    return 0


def run_design(args: argparse.Namespace, params: Any) -> int:
    from tasks.tracking import check_model_exists

    check_model_exists(params.model_uri, params.tracking_uri)  # before Prefect starts anything
    check_seeds(params)
    start_local_prefect_api()
    from flows.design_search import design_search

    report(design_search(params), args.json, lambda r: design_lines(r, params))
    return 0


def ui_url(port: int, host: str = "127.0.0.1") -> str:
    """The MLflow UI's experiments page in its model-training view: MLflow 3.17's UI opens a fresh browser in its
    GenAI view (and lists only GenAI experiments there) unless the URL says ``workflowType=machine_learning``
    (mlflow/mlflow#24498); the Prefect artifacts' run links carry it too (``flows.campaign.mlflow_run_url``)."""
    return f"http://{host}:{port}/#/experiments?workflowType=machine_learning"


def run_ui(args: argparse.Namespace, params: Any) -> int:
    uri = environment.tracking_uri(args.tracking_uri)
    check_tracking(uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(args.port)]
    from tasks.tracking import local_artifact_root

    if artifact_root := local_artifact_root(uri):
        command += ["--default-artifact-root", artifact_root]
    print(f"MLflow UI on {ui_url(args.port)} for {uri}", flush=True)
    os.execv(sys.executable, command)
    return 0


def optuna_storage(tracking_uri: str | None) -> str:
    """Where ``advdesign tune`` keeps its studies by default (``flows.tune.default_storage``): ``optuna.db``
    beside a SQLite MLflow store, else in the project folder."""
    from pathlib import Path

    uri = environment.tracking_uri(tracking_uri)
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else environment.PROJECT_ROOT
    return f"sqlite:///{folder / 'optuna.db'}"


def run_dashboard(args: argparse.Namespace, params: Any) -> int:
    from pathlib import Path

    from tasks.tracking import check_database_url

    storage = args.storage or optuna_storage(args.tracking_uri)
    check_database_url(storage, "--storage (Optuna)")
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no Optuna studies in {storage}: run `advdesign tune` first, or give --storage")
    program = Path(sys.executable).parent / "optuna-dashboard"
    if not program.exists():
        raise ValueError("advdesign dashboard needs optuna-dashboard: pip install optuna-dashboard (or make dashboard)")
    print(f"optuna-dashboard on http://127.0.0.1:{args.port} for {storage}", flush=True)
    os.execv(str(program), [str(program), storage, "--host", "127.0.0.1", "--port", str(args.port)])
    return 0


def _dashboard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=port_number, default=8080, help="[default 8080]")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL [default: optuna.db beside the MLflow "
                        "store, where `advdesign tune` keeps its studies]")
    parser.add_argument("--tracking-uri", metavar="URI", help="the MLflow store whose optuna.db to open [default: "
                        "MLFLOW_TRACKING_URI or the project's SQLite store]")


def _campaign_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-runner", choices=["threads", "dask"], default="threads",
                        help="where tasks run: threads in this process, or a Dask cluster [default threads]")
    parser.add_argument("--dask-address", metavar="ADDRESS",
                        help="scheduler address of a running Dask cluster [default: start a local one]")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a whole number in 1–65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: use 1–65535")
    return port


def _ui_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=port_number, default=5000, help="[default 5000]")
    parser.add_argument("--tracking-uri", metavar="URI", help="backend store URI [default: MLFLOW_TRACKING_URI or "
                        "the project's SQLite store]")


def commands() -> dict[str, Command]:
    """The dispatch table: every subcommand, in the order ``advdesign --help`` lists them."""
    from advdesign import cli_evaluate, cli_render, cli_tune

    return {
        "campaign": Command(
            "campaign", "train → design → verify for several defenses, logged to MLflow", run_campaign,
            model=_campaign_model, preset=campaign_preset, exclude=("preset",), extra=_campaign_options,
            description="Label data with the oracle, train one surrogate per defense, design from the seeds with "
            "each and verify the designs on the oracle; a parent MLflow run with a nested run per defense."),
        "train": Command("train", "train one surrogate with one defense and register it in MLflow", run_train,
                         model=_train_model, preset=train_preset),
        "design": Command("design", "design with a registered surrogate, verified on the oracle", run_design,
                          model=_design_model, preset=design_preset),
        **cli_tune.COMMANDS,
        "evaluate": cli_evaluate.COMMAND,
        "render": cli_render.COMMAND,
        "ui": Command("ui", "start the MLflow UI on 127.0.0.1 against the project's tracking store", run_ui,
                      extra=_ui_options, json=False),
        "dashboard": Command("dashboard", "start optuna-dashboard on 127.0.0.1 on the tuning studies (axes named by "
                             "each study's metric)", run_dashboard, extra=_dashboard_options, json=False),
    }


def build_parser(only: str | None = None) -> ArgumentParser:
    """The whole command line; ``only``: the options of that subcommand alone ("": none of them)."""
    parser = ArgumentParser(prog="advdesign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in commands().items():
        command.add_to(sub, options=only is None or only == name)
    return parser


def campaign_parameters(args: argparse.Namespace):
    """The campaign's validated parameters from parsed arguments (``build_parser().parse_args([...])``)."""
    return commands()["campaign"].parameters(args)


#: Libraries whose warnings are theirs to fix, not the user's to read.
QUIET_LIBRARIES = ("mlflow", "prefect", "pydantic", "optuna", "torch", "sklearn", "dask", "distributed", "alembic",
                   "sqlalchemy", "google", "rdkit", "cma", "graphene", "fastapi", "starlette", "uvicorn",
                   "pkg_resources", "setuptools", "numpy", "pandas", "matplotlib", "scipy")


def quiet_warnings() -> None:
    """Library warnings (deprecations, MLflow's and Prefect's notices) stay off the terminal, in this process and
    in the processes it starts (Dask workers); ``python -W …`` or ``PYTHONWARNINGS`` still show them."""
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    for module in QUIET_LIBRARIES:
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def progress_for_terminal() -> bool:
    """Progress bars and stage lines only for a person at a terminal: stdout and stderr both a TTY, and not
    turned off with ``ADVDESIGN_PROGRESS=0``."""
    if os.environ.get("ADVDESIGN_PROGRESS", "1") == "0":
        return False
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def one_line(exc: BaseException) -> str:
    """An exception's first line; a first line that ends in a colon takes the next line with it."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_warnings()
    table = commands()
    name = next((a for a in argv if not a.startswith("-")), None)
    try:
        # Only the chosen subcommand's options: building the others would import their flows.
        args = build_parser(only=name if name in table else "").parse_args(argv)
        check_json_path(getattr(args, "json", None))  # before any work, not after it
        if getattr(args, "json", None) != "-" and progress_for_terminal():
            from tasks import progress

            progress.enable()
            if name not in ("ui", "dashboard"):  # Prefect's local API takes a while to start: say it has begun
                progress.say(f"advdesign {name}: starting Prefect's local API and the MLflow store …")
        with interrupts.exit_cleanly(f"advdesign {name}"):
            return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        message = one_line(exc)
        print(f"advdesign {name if name in table else ''}: error: {message}".replace(" :", ":"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
