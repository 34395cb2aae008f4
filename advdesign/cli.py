"""``advdesign``: the command line. Each subcommand runs one Prefect flow on the embedded defaults."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from advdesign import environment


def _add_common_options(p: argparse.ArgumentParser, search: bool = True, train: bool = True) -> None:
    p.add_argument("--designer", default="molecule", help="design domain: molecule or car")
    p.add_argument("--quick", action="store_true", help="small settings that finish in a few minutes on 2 cores")
    p.add_argument("--seeds", metavar="FILE", help="seed designs, one per line (default: lowest-scoring of a pool)")
    p.add_argument("--n-seeds", type=int, help="seeds drawn from the pool")
    p.add_argument("--n-labelled", type=int, help="designs labelled by the oracle for training")
    p.add_argument("--n-unlabelled", type=int, help="unlabelled designs for VAT")
    p.add_argument("--n-pool", type=int, help="held-out labelled designs the seeds are drawn from")
    p.add_argument("--rng-seed", type=int, help="seed of data sampling and training")
    p.add_argument("--objective", choices=["plogp", "qed"], help="molecule objective")
    p.add_argument("--similarity", type=float, help="δ: minimum similarity to the seed (molecules)")
    p.add_argument("--max-sa", type=float, help="upper bound on SA score (molecules)")
    p.add_argument("--resolution", choices=["coarse", "fine", "finest"], help="flow lattice (cars; default coarse)")
    if train:
        p.add_argument("--epochs", type=int, help="surrogate training epochs")
        p.add_argument("--eps", type=float, help="L∞ radius of adversarial training")
    if search:
        p.add_argument("--method", choices=["l2", "signed", "adam"], help="gradient-search step")
        p.add_argument("--steps", type=int, help="gradient-search steps")
        p.add_argument("--budget", type=int, help="oracle calls to verify each surrogate's designs")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite in the project)")
    p.add_argument("--experiment", default="advdesign", help="MLflow experiment name")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")


def _add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="train → design → verify for several defenses, logged to MLflow")
    _add_common_options(p)
    p.add_argument("--defenses", default="none,fgsm,vat", help="comma-separated: none, fgsm, pgd, vat")
    p.add_argument("--rounds", type=int, default=1,
                   help="model-based loop: label the new designs, add them to the data, retrain (each a nested run)")
    p.add_argument("--task-runner", choices=["threads", "dask"], default="threads",
                   help="where tasks run: threads in this process, or a Dask cluster")
    p.add_argument("--dask-address", help="scheduler address of a running Dask cluster (default: a local one)")
    p = sub.add_parser("train", help="train one surrogate with one defense and register it in MLflow")
    _add_common_options(p, search=False)
    p.add_argument("--defense", default="fgsm", help="none, fgsm, pgd or vat")
    p = sub.add_parser("design", help="gradient design search with a registered surrogate")
    _add_common_options(p, train=False)
    p.add_argument("--model", required=True, help="MLflow model URI, e.g. models:/advdesign-molecule-surrogate@fgsm")


#: Options only one designer reads, and which one.
DESIGNER_OPTIONS = {"objective": "molecule", "similarity": "molecule", "max_sa": "molecule", "resolution": "car"}


def _check_designer_options(args: argparse.Namespace) -> None:
    """A one-line error for an option the chosen designer does not read (``--designer car --objective qed``),
    rather than silently ignoring it."""
    for option, owner in DESIGNER_OPTIONS.items():
        if getattr(args, option, None) is not None and args.designer != owner:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} is a {owner} option; --designer {args.designer} does not take it")


def _sections(args: argparse.Namespace) -> dict:
    """The campaign's parameter sections with the command line's overrides applied."""
    from flows.parameters import CampaignParameters

    from designers import DESIGNERS

    if args.designer in DESIGNERS:  # an unknown designer is reported with the choices, below
        _check_designer_options(args)
    # The designer's own defaults (a car's search step, sizes and radii); an unknown name is reported below.
    base = CampaignParameters.defaults(args.designer if args.designer in DESIGNERS else "molecule", quick=args.quick)
    sections = base.model_dump()
    sections["designer"]["name"] = args.designer
    updates = {
        ("data", "seeds_file"): "seeds", ("data", "n_seeds"): "n_seeds", ("data", "n_labelled"): "n_labelled",
        ("data", "n_unlabelled"): "n_unlabelled", ("data", "n_seed_pool"): "n_pool", ("data", "rng_seed"): "rng_seed",
        ("surrogate", "epochs"): "epochs", ("surrogate", "eps"): "eps",
        ("search", "method"): "method", ("search", "steps"): "steps", ("search", "budget"): "budget",
        ("designer", "objective"): "objective", ("designer", "similarity_threshold"): "similarity",
        ("designer", "max_sa"): "max_sa", ("designer", "resolution"): "resolution",
    }
    for (section, key), option in updates.items():
        value = getattr(args, option, None)
        if value is not None:
            sections[section][key] = value
    sections["experiment"] = args.experiment
    sections["tracking_uri"] = args.tracking_uri
    return sections


def _validated(model, **values):
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def campaign_parameters(args: argparse.Namespace):
    from flows.parameters import CampaignParameters

    sections = _sections(args)
    sections["defenses"] = tuple(d.strip() for d in args.defenses.split(",") if d.strip())
    sections["rounds"] = args.rounds
    return _validated(CampaignParameters, **sections)


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


def _check_tracking(uri: str | None) -> None:
    from tasks.tracking import check_reachable

    check_reachable(environment.tracking_uri(uri))  # before Prefect starts anything


def _write(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=2)
    if path:
        Path(path).write_text(text + "\n")
    else:
        print(text)


def run_campaign(args: argparse.Namespace) -> int:
    params = campaign_parameters(args)
    _check_tracking(params.tracking_uri)
    from flows.campaign import campaign

    summary = campaign.with_options(task_runner=task_runner(args.task_runner, args.dask_address))(params)
    _write(summary, args.json)
    if args.json:
        print(_summary_lines(summary, args.json))
    return 1 if any("error" in r for r in summary["defenses"].values()) else 0


def run_train(args: argparse.Namespace) -> int:
    from flows.train_surrogate import TrainParameters

    s = _sections(args)
    params = _validated(TrainParameters, designer=s["designer"], data=s["data"], surrogate=s["surrogate"],
                        defense=args.defense, experiment=s["experiment"], tracking_uri=s["tracking_uri"])
    _check_tracking(params.tracking_uri)
    from flows.train_surrogate import train_surrogate

    _write(train_surrogate(params), args.json)
    return 0


def run_design(args: argparse.Namespace) -> int:
    from flows.design_search import DesignParameters

    s = _sections(args)
    params = _validated(DesignParameters, model_uri=args.model, designer=s["designer"], data=s["data"],
                        search=s["search"], experiment=s["experiment"], tracking_uri=s["tracking_uri"])
    from tasks.tracking import check_model_exists

    check_model_exists(params.model_uri, params.tracking_uri)  # before Prefect starts anything
    from flows.design_search import design_search

    _write(design_search(params), args.json)
    return 0


def _summary_lines(summary: dict, path: str) -> str:
    rows = [f"{'defense':8} {'success':>8} {'transfer':>9} {'true gain':>10} {'pred gain':>10}"]
    for defense, r in summary["defenses"].items():
        if "error" in r:
            rows.append(f"{defense:8} failed: {r['error']}")
        else:
            rows.append(f"{defense:8} {r['success_rate']:8.2f} {r['transfer_rate']:9.2f} "
                        f"{r['oracle_improvement_mean']:10.2f} {r['predicted_improvement_mean']:10.2f}")
    m = summary["mlflow"]
    rows += [f"oracle calls {summary['oracle_calls']}, {summary['wall_seconds']:.0f} s; summary in {path}",
             f"MLflow: {m['tracking_uri']} (experiment {m['experiment_id']}, run {m['parent_run_id']}); "
             "browse with `make ui`"]
    return "\n".join(rows)


def _ui_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the project's tracking store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", help="backend store URI (default: the project's SQLite store)")


def run_ui(args: argparse.Namespace) -> int:
    uri = environment.tracking_uri(args.tracking_uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(args.port)]
    from tasks.tracking import local_artifact_root

    if artifact_root := local_artifact_root(uri):
        command += ["--default-artifact-root", artifact_root]
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {uri}", flush=True)
    os.execv(sys.executable, command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advdesign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_subcommands(sub)
    _ui_parser(sub)
    try:
        from advdesign import cli_evaluate
    except ImportError:
        cli_evaluate = None
    if cli_evaluate is not None:
        cli_evaluate.add_parser(sub)
    from advdesign import cli_tune  # tune, baselines

    cli_tune.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"campaign": run_campaign, "train": run_train, "design": run_design, "ui": run_ui}
    try:
        if args.command in handlers:
            return handlers[args.command](args)
        if args.command in ("tune", "baselines"):
            return args.func(args)
        from advdesign import cli_evaluate

        return cli_evaluate.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"advdesign {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
