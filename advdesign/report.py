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


def check_seeds(params: Any) -> None:
    """A seed file none of whose lines the designer can use fails in one line (the first line's reason) before any
    labelling; a file with some bad lines passes, and the flow names each bad line and designs from the rest."""
    data = getattr(params, "data", None)
    path = getattr(data, "seeds_file", None)
    if not path:
        return
    from designers import make_designer
    from tasks.pure_stages import read_seed_file, split_encodable

    designer = make_designer(params.designer.name, **params.designer.settings())
    designs, errors = read_seed_file(designer, path)
    designs, unrepresentable = split_encodable(designer, designs)
    if not designs:
        reasons = errors + [f"{path}: {error}" for error in unrepresentable]
        raise ValueError(f"seeds file {path} has no usable seed ({len(reasons)} bad line{'s' * (len(reasons) > 1)};"
                         f" first: {reasons[0] if reasons else 'none'})")


def check_json_path(json_option: str | None) -> None:
    """``--json PATH`` fails in one line before any work when PATH cannot be written (a folder, a read-only or
    impossible place), rather than after a whole campaign; ``--json`` alone (``-``) prints instead."""
    if not json_option or json_option == "-":
        return
    path = Path(json_option)
    if path.is_dir():
        raise ValueError(f"--json {json_option}: is a folder; give a file name")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        raise ValueError(f"--json {json_option}: cannot write there ({exc.strerror or exc})") from None
    if not existed:
        path.unlink(missing_ok=True)


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
