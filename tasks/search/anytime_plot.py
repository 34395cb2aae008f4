"""The anytime picture: best-so-far improvement against oracle calls per seed, one line per method (matplotlib
only, no display). Returns the Figure for the caller to log or save and close."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def anytime_figure(curves: Mapping[str, Mapping[int, float]], title: str, ylabel: str = "best-so-far improvement",
                   errors: Mapping[str, Mapping[int, float]] | None = None,
                   labels: Mapping[str, str] | None = None) -> plt.Figure:
    """``curves[method][c]``: the mean improvement after ``c`` oracle calls per seed; ``errors`` the same
    layout with a spread for error bars; ``labels`` replaces a method's legend entry."""
    figure, axis = plt.subplots(figsize=(6, 4))
    ticks: set[int] = set()
    for method, curve in curves.items():
        calls = sorted(int(c) for c in curve)
        if not calls:
            continue
        ticks.update(calls)
        spread = [errors[method][c] for c in calls] if errors and method in errors else None
        axis.errorbar(calls, [curve[c] for c in calls], yerr=spread, marker="o", capsize=3,
                      label=(labels or {}).get(method, method))
    if ticks:
        axis.set_xscale("log")
        axis.set_xticks(sorted(ticks), [str(c) for c in sorted(ticks)])
        axis.minorticks_off()
    axis.set_xlabel("oracle calls per seed")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def curve_of(metrics: Mapping[str, float], checkpoints: Sequence[int] | None = None) -> dict[int, float]:
    """The ``improvement_at_{c}`` entries of :func:`tasks.search.anytime.protocol_metrics`' output as ``{c: value}``."""
    out = {int(k.rsplit("_", 1)[1]): float(v) for k, v in metrics.items() if k.startswith("improvement_at_")}
    return {c: v for c, v in sorted(out.items()) if checkpoints is None or c in checkpoints}
