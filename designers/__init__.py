"""Design domains behind one small protocol (:class:`designers.base.Designer`)."""

from __future__ import annotations

from typing import Any

DESIGNERS = ("molecule", "car")
#: Test problems with a known optimum (designers/toy.py): registered for tests and examples, not offered on the CLI.
TOY_DESIGNERS = ("tokens", "sphere")


def make_designer(name: str, **settings: Any):
    """Construct a designer by name; ``settings`` go to its constructor."""
    if name == "molecule":
        from designers.molecule import MoleculeDesigner

        return MoleculeDesigner(**settings)
    if name == "car":
        from designers.car import CarDesigner

        return CarDesigner(**settings)
    if name == "tokens":
        from designers.toy import TokenMatch

        return TokenMatch(**settings)
    if name == "sphere":
        from designers.toy import Sphere

        return Sphere(**settings)
    raise ValueError(f"unknown designer {name!r}; choose one of {', '.join(DESIGNERS)}")
