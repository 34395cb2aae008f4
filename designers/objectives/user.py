"""User objectives: any importable callable, named ``module.path:function`` (optionally ``@version``).

A molecule objective takes a list of SMILES and returns one float per molecule (higher is better); a car objective
takes the oracle's components (a dict of arrays, one entry per blueprint: ``C_D``, ``C_L``, ``A``, ``m``, ``v``,
``drag_area``, ``power_residual``) and returns one float per blueprint. NaN, an infinite value or an exception
for one design fails that design with the reason; the rest of the batch is scored. When the callable raises for
the batch it is called once per design, so the culprit is named.

The module is imported as Python would (installed packages, ``PYTHONPATH``), and from the current directory too.
The cache identity of a user objective is its text plus a version: the ``@version`` suffix when given
(``my_pkg.scoring:score@2``), else the callable's ``__version__`` attribute when it has one. Change either when
the function's answers change, or Prefect's cached oracle labels of the old function are reused.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np


class ObjectiveError(ValueError):
    """A user objective that cannot be used at all (not importable, not callable, wrong return length)."""


@dataclass(frozen=True)
class UserObjective:
    """A resolved ``module:function[@version]``: ``text`` without the version, ``version`` from the suffix or the
    callable's ``__version__`` (``None`` if neither)."""

    text: str
    module: str
    attribute: str
    version: str | None
    function: Callable[..., Any]

    @property
    def label(self) -> str:
        return f"{self.text}@{self.version}" if self.version else self.text


def looks_like_user_objective(text: str) -> bool:
    return ":" in text and not text.startswith("pmo:")


@lru_cache(maxsize=None)
def load(text: str) -> UserObjective:
    """Import ``module.path:function[@version]``; raises :class:`ObjectiveError` naming what is wrong."""
    spec, _, version = text.partition("@")
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or "@" in version:
        raise ObjectiveError(f"objective {text!r} is not of the form module.path:function[@version]")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a module beside the user, as `python -m` would find it (installed ones win)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ObjectiveError(f"objective {text!r}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module raised while importing
        raise ObjectiveError(f"objective {text!r}: importing {module_name!r} raised {type(exc).__name__}: "
                             f"{_first_line(exc)}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ObjectiveError(f"objective {text!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ObjectiveError(f"objective {text!r}: {attribute!r} is a {type(target).__name__}, not callable")
    if not version:
        found = getattr(target, "__version__", None)
        version = str(found) if found is not None else ""
    return UserObjective(spec, module_name, attribute, version or None, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _values(result: Any, n: int, name: str) -> list[Any]:
    """The callable's answer as a list of ``n`` items; raises :class:`ObjectiveError` on a wrong shape."""
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise ObjectiveError(f"objective {name} returned a {type(result).__name__}, not a sequence of {n} scores")
    values = list(np.asarray(result, dtype=object).reshape(-1)) if isinstance(result, np.ndarray) else list(result)
    if len(values) != n:
        raise ObjectiveError(f"objective {name} returned {len(values)} scores for {n} designs")
    return values


def _check(value: Any, name: str, design: str) -> tuple[float, str | None]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan, f"objective {name} returned {value!r} for {design}, not a number"
    if not math.isfinite(number):
        return math.nan, f"objective {name} returned {number} for {design}"
    return number, None


def call(function: Callable[[Any], Any], name: str, batch: Any, n: int, one: Callable[[int], Any],
         describe: Callable[[int], str]) -> tuple[np.ndarray, list[str | None]]:
    """Score ``n`` designs with ``function(batch)``; on an exception, ``function(one(i))`` design by design.

    ``describe(i)`` names design ``i`` in a failure. Returns ``(scores, failures)``: NaN and a reason where a design
    failed. A wrong number of scores is the callable's fault, not a design's: it raises :class:`ObjectiveError`.
    """
    scores, failures = np.full(n, np.nan), [None] * n
    try:
        values = _values(function(batch), n, name)
    except ObjectiveError:
        raise
    except Exception:
        values = None
    if values is not None:
        for i, value in enumerate(values):
            scores[i], failures[i] = _check(value, name, describe(i))
        return scores, failures
    for i in range(n):
        try:
            value = _values(function(one(i)), 1, name)[0]
        except ObjectiveError:
            raise
        except Exception as exc:
            failures[i] = f"objective {name} raised {type(exc).__name__} on {describe(i)}: {_first_line(exc)}"
            continue
        scores[i], failures[i] = _check(value, name, describe(i))
    return scores, failures


def score_smiles(objective: UserObjective, smiles: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
    """A molecule objective on a list of SMILES (see :func:`call`)."""
    smiles = list(smiles)
    return call(objective.function, objective.label, smiles, len(smiles), lambda i: [smiles[i]],
                lambda i: repr(smiles[i]))


def score_components(objective: UserObjective, components: dict[str, np.ndarray],
                     names: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
    """A car objective on the oracle's components (arrays of equal length; ``names[i]`` names blueprint ``i``)."""
    n = len(names)
    return call(objective.function, objective.label, components, n,
                lambda i: {k: v[i : i + 1] for k, v in components.items()}, lambda i: names[i])


#: Designs a user objective is tried on before any work starts (its return length is checked).
PROBE_SMILES = ("CCO", "c1ccccc1O")
PROBE_CAR = {"C_D": np.array([0.45, 0.6]), "C_L": np.array([0.1, -0.05]), "A": np.array([2.2, 2.4]),
             "m": np.array([1400.0, 1600.0]), "v": np.array([50.0, 45.0]), "drag_area": np.array([0.99, 1.44]),
             "power_residual": np.array([0.0, 0.0])}


@lru_cache(maxsize=None)
def probe(text: str, designer: str) -> UserObjective:
    """Load ``text`` and call it once on two small designs, so a wrong return length, or a callable that fails on
    both (a wrong signature), fails before any work; one failing probe design is allowed."""
    objective = load(text)
    if designer == "car":
        _, failures = score_components(objective, PROBE_CAR, ["probe blueprint 1", "probe blueprint 2"])
    else:
        _, failures = score_smiles(objective, PROBE_SMILES)
    if all(failures):  # a wrong signature (a car function given SMILES) fails every design
        raise ObjectiveError(f"{failures[0]} (and on every probe {designer} design: does it take "
                             f"{'the oracle components' if designer == 'car' else 'a list of SMILES'}?)")
    return objective
