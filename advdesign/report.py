"""What every subcommand shares after its parameters are built: the tracking check, and the result on the terminal
(a short human summary) or as JSON (``--json PATH`` writes it and prints the summary; ``--json`` alone prints only
the JSON, for a pipe)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from advdesign import environment


def check_tracking(uri: str | None) -> None:
    """Fail in one line, before Prefect starts anything, if the MLflow store cannot be reached."""
    from tasks.tracking import check_reachable

    check_reachable(environment.tracking_uri(uri))


def report(result: dict[str, Any], json_option: str | None, summary: Callable[[dict[str, Any]], list[str]]) -> None:
    """The summary's lines on stdout, or the JSON (see the module's docstring)."""
    text = json.dumps(result, indent=2)
    if json_option == "-":
        print(text)
        return
    lines = summary(result)
    if json_option:
        path = Path(json_option)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        lines.append(f"JSON in {path}")
    print("\n".join(lines), flush=True)


def number(result: dict[str, Any], key: str, spec: str = ".2f") -> str:
    """A metric for a table cell: formatted, or "–" where the result lacks it or it is not finite."""
    value = result.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, spec)
    return "–"


def mlflow_line(tracking_uri: str, run_id: str, experiment_id: str | None = None) -> str:
    where = f"experiment {experiment_id}, " if experiment_id else ""
    return f"MLflow: {tracking_uri} ({where}run {run_id}); browse with `advdesign ui`"
