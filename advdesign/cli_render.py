"""``advdesign render``: pictures of the flow around car designs, from their keys or from a campaign.

    advdesign render KEY [KEY ...] [--seed KEY] --output flow.png      # designs given as car keys
    advdesign render --campaign car.json --output flow.png             # a campaign's best designs beside their seeds
    advdesign render --run RUN_ID --output flow.png                    # the same from its MLflow run

The options are the fields of :class:`RenderParameters` (generated like every subcommand's; the keys are the one
positional argument); ``advdesign.cli`` lists :data:`COMMAND` in its dispatch table. The picture is
:meth:`designers.car.CarDesigner.render_flow`'s: the speed (or vorticity) at the end of the oracle's own 2-D run on
the chosen lattice, not an oracle call. A campaign's designs are read from the ``designs.csv`` tables its defense
runs logged to MLflow (the campaign's JSON names the runs and the store).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advdesign.options import PREFIX, Command
from advdesign.report import report


class RenderParameters(BaseModel):
    """What ``advdesign render`` draws, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    designs: tuple[str, ...] = Field((), description="car keys (car:L=…,W=…,c=…,h=…/…), one row each")
    seed: str | None = Field(None, description="a car key drawn on the left of every key's row (default: each "
                             "key alone)")
    campaign: str | None = Field(None, description="a car campaign's --json file: per defense, its best designs "
                                 "beside their seeds (read from the campaign's MLflow runs)")
    run: str | None = Field(None, description="an MLflow run id: a car campaign's parent run or one defense's run "
                            "(its best designs beside their seeds)")
    defenses: tuple[str, ...] | None = Field(None, description="with --campaign or --run: only these defenses "
                                             "(default: all the campaign ran)")
    n_best: int = Field(2, ge=1, le=20, description="with --campaign or --run: per defense, the seeds whose best "
                        "design gained most")
    quantity: Literal["speed", "vorticity"] = Field("speed", description="speed |u|/U with streamlines, or "
                                                    "vorticity")
    resolution: Literal["coarse", "fine", "finest", "smoke"] = Field(
        "coarse", description="flow lattice (the oracle's: coarse 8 cells/m, fine 16, finest 24; smoke 4, a short "
        "run, for plumbing tests only)")
    threads: int | None = Field(None, ge=1, description="flows run at once (default: all cores)")
    output: str = Field("flow.png", description="the PNG to write")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: the campaign JSON's, else "
                                     "MLFLOW_TRACKING_URI or the project's SQLite store)")

    @model_validator(mode="after")
    def _check(self) -> "RenderParameters":
        """Every mistake in one line naming the culprit, before any flow runs."""
        if self.seed is not None and not self.designs:
            raise ValueError("--seed is drawn beside car keys; give at least one")
        if not (self.designs or self.campaign or self.run):
            raise ValueError("nothing to render: give car keys, --campaign FILE or --run RUN_ID")
        if self.defenses is not None and not (self.campaign or self.run):
            raise ValueError("--defenses picks from a campaign; give --campaign FILE or --run RUN_ID")
        if Path(self.output).suffix.lower() != ".png":
            raise ValueError(f"--output {self.output}: the picture is a PNG; name it *.png")
        if self.campaign is not None and not Path(self.campaign).is_file():
            raise ValueError(f"campaign file {self.campaign} not found")
        if self.designs or self.seed:
            from designers.car import CarDesigner

            parse = CarDesigner(compile=False).parse
            for number, key in enumerate(self.designs, 1):
                try:
                    parse(key)
                except ValueError as error:
                    raise ValueError(f"key {number} {_short(key)}: {error}") from None
            if self.seed is not None:
                try:
                    parse(self.seed)
                except ValueError as error:
                    raise ValueError(f"--seed {_short(self.seed)}: {error}") from None
        return self


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def campaign_rows(params: RenderParameters) -> list[tuple[str, str, str]]:
    """``(seed key, design key, caption)`` rows of the campaign's best designs (``--campaign`` and/or ``--run``)."""
    import os

    from designers.car_flow_picture import best_pairs, score_unit
    from tasks.tracking import design_tables

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one summary line, no progress bars

    sources: list[tuple[str, str | None, str]] = []  # (run id, tracking URI, where it came from)
    if params.campaign is not None:
        summary = _read_campaign(params.campaign)
        uri = params.tracking_uri or summary.get("mlflow", {}).get("tracking_uri")
        runs = {name: r["run_id"] for name, r in summary["defenses"].items() if isinstance(r, dict) and "run_id" in r}
        _check_defenses(params.defenses, list(summary["defenses"]), params.campaign)
        for name, run_id in runs.items():
            if params.defenses is None or name in params.defenses:
                sources.append((run_id, uri, params.campaign))
    if params.run is not None:
        sources.append((params.run, params.tracking_uri, f"run {params.run}"))
    rows: list[tuple[str, str, str]] = []
    for run_id, uri, where in sources:
        tables = design_tables(run_id, uri)
        if params.campaign is None or where != params.campaign:
            _check_defenses(params.defenses, list(tables), where)
        for defense, table in tables.items():
            if params.defenses is not None and defense not in params.defenses:
                continue
            if len(table) and not str(table["seed"].iloc[0]).startswith("car:"):
                raise ValueError(f"{where} is not a car campaign (its designs are not car keys); render draws car "
                                 "flows")
            rows += best_pairs(table, params.n_best, defense, score_unit(table.attrs.get("designer", {}).get(
                "objective")))
    if not rows:
        raise ValueError(f"{params.campaign or f'run {params.run}'}: no verified design to draw (every oracle call "
                         "failed, or no defense finished)")
    return rows


def _read_campaign(path: str) -> dict[str, Any]:
    try:
        summary = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"campaign file {path} is not JSON: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("defenses"), dict):
        raise ValueError(f"{path} is not a campaign's --json output (it has no 'defenses')")
    if summary.get("designer") != "car":
        raise ValueError(f"{path} is a {summary.get('designer', 'non-car')} campaign; render draws car flows")
    return summary


def _check_defenses(chosen: tuple[str, ...] | None, available: list[str], where: str) -> None:
    missing = [d for d in chosen or () if d not in available]
    if missing:
        raise ValueError(f"{where} has no defense {missing[0]!r}; it ran {', '.join(available) or 'none'}")


def render(params: RenderParameters) -> dict[str, Any]:
    """Draw the picture; the ``--json`` document: where it is and what it shows."""
    from designers.car import CarDesigner

    started = time.perf_counter()
    rows = [(params.seed, key, "") for key in params.designs]
    if params.campaign is not None or params.run is not None:
        rows += campaign_rows(params)
    designer = CarDesigner(resolution=params.resolution, threads=params.threads, compile=False)
    output = Path(params.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    designer.render_flow([(seed, design) for seed, design, _ in rows], str(output),
                         captions=[caption for _, _, caption in rows], quantity=params.quantity)
    problems = {key: designer.violations(designer.parse(key)) for _, key, _ in rows}
    return {
        "png": str(output), "bytes": output.stat().st_size, "quantity": params.quantity,
        "resolution": params.resolution, "wall_seconds": round(time.perf_counter() - started, 2),
        "rows": [{"seed": seed, "design": design, "caption": caption, "problem": problems[design]}
                 for seed, design, caption in rows],
    }


def lines(result: dict[str, Any]) -> list[str]:
    n = len(result["rows"])
    out = [f"flow picture ({result['quantity']}, {result['resolution']} lattice, 2-D at Re_h = 400) of {n} "
           f"design{'s' * (n != 1)} in {result['png']} ({result['wall_seconds']:.1f} s)"]
    out += [f"  not simulated: {row['design'][:40]}…: {row['problem']}" for row in result["rows"] if row["problem"]]
    return out


def run(args: argparse.Namespace, params: RenderParameters) -> int:
    report(render(params), args.json, lines)
    return 0


#: Metavariables that say more than the type (set here: other subcommands' ``seed`` is a random seed).
METAVARS = {"seed": "KEY", "campaign": "FILE", "run": "RUN_ID", "output": "PNG"}


def _options(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.dest.removeprefix(PREFIX) in METAVARS and action.dest.startswith(PREFIX):
            action.metavar = METAVARS[action.dest.removeprefix(PREFIX)]
    parser.add_argument(PREFIX + "designs", nargs="*", metavar="KEY", default=argparse.SUPPRESS,
                        help="car keys to draw (car:L=…,W=…,c=…,h=…/…, as in a campaign's designs.csv), one row each; give them "
                        "together, before or after the options")


COMMAND = Command(
    "render", "pictures of the flow around car designs (keys, or a campaign's best designs beside their seeds)",
    run, model=lambda: RenderParameters, exclude=("designs",), extra=_options,
    description="Draw the 2-D flow (speed or vorticity at the end of the oracle's own run) around car designs given "
    "as keys, or around a car campaign's best designs beside their seeds (--campaign JSON or --run MLflow run id), "
    "into a PNG. Not an oracle call.")
