"""Molecular properties the literature's objectives are built from (RDKit, no torch)."""

from __future__ import annotations

import re

from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors


def logp(mol: Chem.Mol) -> float:
    """Crippen logP (Wildman & Crippen 1999)."""
    return Crippen.MolLogP(mol)


def tpsa(mol: Chem.Mol) -> float:
    """Topological polar surface area (Ertl et al. 2000), Å²."""
    return Descriptors.TPSA(mol)


def bertz(mol: Chem.Mol) -> float:
    """Bertz's molecular complexity index."""
    return Descriptors.BertzCT(mol)


def mol_weight(mol: Chem.Mol) -> float:
    """Average molecular weight, Da."""
    return Descriptors.MolWt(mol)


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012)."""
    return QED.qed(mol)


def rotatable_bonds(mol: Chem.Mol) -> int:
    return Descriptors.NumRotatableBonds(mol)


def rings(mol: Chem.Mol) -> int:
    return rdMolDescriptors.CalcNumRings(mol)


def aromatic_rings(mol: Chem.Mol) -> int:
    return rdMolDescriptors.CalcNumAromaticRings(mol)


def count_atoms(mol: Chem.Mol, element: str | None = None) -> int:
    """Atoms of ``element`` (all atoms when ``None``), implicit hydrogens included."""
    with_h = Chem.AddHs(mol)
    return sum(1 for atom in with_h.GetAtoms() if element is None or atom.GetSymbol() == element)


def smiles_text_atom_count(mol: Chem.Mol) -> int:
    """The "total atom count" PMO scored its formula terms with (TDC ≤ 0.3.6, which PMO pins): the formula parser
    run over the canonical SMILES *text*, so an uppercase symbol counts 1, or the number after it (a ring-closure
    digit), aromatic atoms and implicit hydrogens count 0. TDC fixed this in 0.3.7 (Aug 2022, keeping the old one as
    ``*_prev``); PMO's published numbers were measured with it."""
    return sum(int(n) if n else 1 for _, n in re.findall(r"([A-Z][a-z]*)(\d*)", Chem.MolToSmiles(mol)))


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """``"C7H8N2O2"`` → ``[("C", 7), ("H", 8), ("N", 2), ("O", 2)]``; raises ``ValueError`` on anything else."""
    parts = re.findall(r"([A-Z][a-z]?)(\d*)", formula)
    if not parts or "".join(e + n for e, n in parts) != formula:
        raise ValueError(f"not a molecular formula: {formula!r}")
    return [(element, int(n) if n else 1) for element, n in parts]
