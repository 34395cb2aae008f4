"""Every search method by name, per kind of designer (``tokens`` or ``box``, :func:`tasks.search.base.designer_kind`)."""

from __future__ import annotations

from typing import Any

from tasks.search.base import Searcher, designer_kind
from tasks.search.cmaes import CMAESSearch
from tasks.search.genetic import SelfiesGA
from tasks.search.graph_ga import GraphGA
from tasks.search.hill_climber import HillClimber
from tasks.search.random_edits import RandomEdits
from tasks.search.random_gaussian import RandomGaussian
from tasks.search.tpe_edits import TPEEdits

#: The black boxes (no surrogate) each kind of designer supports, the first one its default.
BLACK_BOXES: dict[str, dict[str, type[Searcher]]] = {
    "tokens": {"hill-climber": HillClimber, "genetic": SelfiesGA, "graph-ga": GraphGA, "random": RandomEdits,
               "tpe": TPEEdits},
    "box": {"cmaes": CMAESSearch, "random": RandomGaussian},
}


def black_box_names(designer: Any) -> tuple[str, ...]:
    """The black boxes that can search ``designer``, its default first."""
    return tuple(name for name, method in BLACK_BOXES[designer_kind(designer)].items() if method.supports(designer))


def make_black_box(name: str, designer: Any, **settings: Any) -> Searcher:
    """A black-box searcher by name for ``designer``; raises ``ValueError`` listing the choices."""
    choices = {n: BLACK_BOXES[designer_kind(designer)][n] for n in black_box_names(designer)}
    if name not in choices:
        raise ValueError(f"unknown baseline {name!r} for the {designer.name} designer; choose from "
                         f"{', '.join(choices)}")
    return choices[name](**settings)
