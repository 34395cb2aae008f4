"""The building blocks of GuacaMol's goal-directed objectives: each maps an RDKit molecule to a score in [0, 1].

Brown et al. 2019 (GuacaMol), "Goal-directed benchmarks": a task is a similarity to a target, a property passed
through a modifier (:mod:`designers.objectives.modifiers`), a formula match, a SMARTS match, or the arithmetic or
geometric mean of several of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from rdkit import Chem

from designers.objectives import descriptors
from designers.objectives.fingerprints import fingerprint, tanimoto
from designers.objectives.modifiers import Gaussian, Identity, arithmetic_mean, geometric_mean

Score = Callable[[Chem.Mol], float]


@lru_cache(maxsize=None)
def _target_fingerprint(smiles: str, kind: str) -> Any:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"similarity target {smiles!r} is not a valid molecule")
    return fingerprint(mol, kind)


@dataclass(frozen=True)
class Similarity:
    """Tanimoto similarity of the ``kind`` fingerprint to ``target`` (SMILES), through ``modifier``."""

    target: str
    kind: str = "ECFP4"
    modifier: Callable[[float], float] = Identity()

    def __call__(self, mol: Chem.Mol) -> float:
        return self.modifier(tanimoto(fingerprint(mol, self.kind), _target_fingerprint(self.target, self.kind)))


@dataclass(frozen=True)
class Property:
    """A descriptor (:mod:`designers.objectives.descriptors`) through ``modifier``."""

    descriptor: Callable[[Chem.Mol], float]
    modifier: Callable[[float], float] = Identity()

    def __call__(self, mol: Chem.Mol) -> float:
        return self.modifier(float(self.descriptor(mol)))


@dataclass(frozen=True)
class AtomCount:
    """Atoms of one element (``None``: all atoms), hydrogens included, through ``modifier``."""

    element: str | None
    modifier: Callable[[float], float] = Identity()

    def __call__(self, mol: Chem.Mol) -> float:
        return self.modifier(float(descriptors.count_atoms(mol, self.element)))


@dataclass(frozen=True)
class Isomer:
    """Closeness to a molecular formula: per element a Gaussian (σ = 1) on its count, and one (σ = 2) on the total
    atom count, averaged (geometric by default, as GuacaMol v2 and PMO use): exactly 1 for every isomer.

    ``total="smiles_text"`` counts the total as PMO's oracle did (:func:`descriptors.smiles_text_atom_count`), for
    comparisons with PMO's published numbers; isomers then score far below 1 unless their SMILES text happens to
    spell the right count."""

    formula: str
    mean: str = "geometric"
    total: str = "atoms"
    terms: tuple[Callable[[Chem.Mol], float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.total not in ("atoms", "smiles_text"):
            raise ValueError(f"Isomer total must be 'atoms' or 'smiles_text', not {self.total!r}")
        counts = descriptors.parse_formula(self.formula)
        terms: list[Callable[[Chem.Mol], float]] = [AtomCount(element, Gaussian(n, 1.0)) for element, n in counts]
        everything = Gaussian(sum(n for _, n in counts), 2.0)
        terms.append(AtomCount(None, everything) if self.total == "atoms"
                     else Property(descriptors.smiles_text_atom_count, everything))
        object.__setattr__(self, "terms", tuple(terms))

    def __call__(self, mol: Chem.Mol) -> float:
        values = [term(mol) for term in self.terms]
        return geometric_mean(values) if self.mean == "geometric" else arithmetic_mean(values)


@lru_cache(maxsize=None)
def smarts_pattern(smarts: str) -> Chem.Mol:
    """The query molecule of ``smarts``; raises ``ValueError`` naming an invalid one."""
    from rdkit import rdBase

    with rdBase.BlockLogs():  # the one-line error below says it; RDKit's parser would print five more
        pattern = Chem.MolFromSmarts(smarts) if smarts else None
    if pattern is None:
        raise ValueError(f"invalid SMARTS {smarts!r}")
    return pattern


@dataclass(frozen=True)
class Smarts:
    """1 when the molecule matches ``smarts`` (``inverse``: when it does not), else 0."""

    smarts: str
    inverse: bool = False

    def __call__(self, mol: Chem.Mol) -> float:
        found = mol.HasSubstructMatch(smarts_pattern(self.smarts))
        return float(found != self.inverse)


@dataclass(frozen=True)
class Mean:
    """The arithmetic or geometric mean of several scores (a multi-property objective, "MPO")."""

    parts: tuple[Score, ...]
    kind: str = "geometric"

    def __call__(self, mol: Chem.Mol) -> float:
        values = [part(mol) for part in self.parts]
        return geometric_mean(values) if self.kind == "geometric" else arithmetic_mean(values)
