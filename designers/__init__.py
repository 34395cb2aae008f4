"""Design domains behind one small protocol (:class:`designers.base.Designer`)."""

from __future__ import annotations

from typing import Any

DESIGNERS = ("molecule", "car")


def make_designer(name: str, **settings: Any):
    """Construct a designer by name; ``settings`` go to its constructor."""
    if name == "molecule":
        from designers.molecule import MoleculeDesigner

        return MoleculeDesigner(**settings)
    if name == "car":
        from designers.car import CarDesigner

        return CarDesigner(**settings)
    raise ValueError(f"unknown designer {name!r}; choose one of {', '.join(DESIGNERS)}")
