"""Every search method by name, per kind of designer (``tokens`` or ``box``, :func:`tasks.search.base.designer_kind`)."""

from __future__ import annotations

from typing import Any

from tasks.search.base import Searcher, designer_kind
from tasks.search.cmaes import CMAESSearch
from tasks.search.genetic import SelfiesGA
from tasks.search.hill_climber import HillClimber
from tasks.search.random_edits import RandomEdits
from tasks.search.random_gaussian import RandomGaussian
from tasks.search.tpe_edits import TPEEdits

#: The black boxes (no surrogate) each kind of designer supports, the first one its default.
BLACK_BOXES: dict[str, dict[str, type[Searcher]]] = {
    "tokens": {"hill-climber": HillClimber, "genetic": SelfiesGA, "random": RandomEdits, "tpe": TPEEdits},
    "box": {"cmaes": CMAESSearch, "random": RandomGaussian},
}


def black_box_names(designer: Any) -> tuple[str, ...]:
    return tuple(BLACK_BOXES[designer_kind(designer)])


def make_black_box(name: str, designer: Any, **settings: Any) -> Searcher:
    """A black-box searcher by name for ``designer``; raises ``ValueError`` listing the choices."""
    choices = BLACK_BOXES[designer_kind(designer)]
    if name not in choices:
        raise ValueError(f"unknown baseline {name!r} for the {designer.name} designer; choose from "
                         f"{', '.join(choices)}")
    return choices[name](**settings)
