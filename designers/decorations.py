"""Substituent decorations: a medicinal chemist's smallest move, one common group put on an atom that carries a
hydrogen (the Topliss-style substituents: F, Cl, CH3, OH, NH2, CF3, CN, OCH3).

A single SELFIES token edit cannot make this move (a branch takes a ``[Branch1]``, a length token and its atoms),
and a group built one atom at a time must pass through molecules the oracle may rank no higher. On PMO's celecoxib
rediscovery the design loop stalled exactly there: its best molecule was celecoxib without its CF3.
No torch import: the searchers hand over SMILES and get SMILES back.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Sequence

from rdkit import Chem, RDLogger

#: The groups, each attached through its atom bonded to ``*``.
SUBSTITUENTS = ("*F", "*Cl", "*C", "*O", "*N", "*C(F)(F)F", "*C#N", "*OC")

#: Parents per chunk of work (and per random stream): fixed, so the draws do not depend on the worker count.
CHUNK = 16


@lru_cache(maxsize=None)
def _substituent(smiles: str) -> tuple[Chem.Mol, int, int]:
    """The group's molecule, its dummy atom and the atom bonded to it."""
    group = Chem.MolFromSmiles(smiles)
    dummy = next(a for a in group.GetAtoms() if a.GetAtomicNum() == 0)
    return group, dummy.GetIdx(), dummy.GetNeighbors()[0].GetIdx()


@lru_cache(maxsize=8192)
def all_decorations(smiles: str) -> tuple[str, ...]:
    """Every distinct molecule one substituent away from ``smiles`` (canonical SMILES, sorted; none for a string
    that is not a molecule). Cached: a loop's incumbents come back round after round.

    >>> len(all_decorations("c1ccccc1"))  # six equivalent sites, eight groups
    8
    """
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return ()
    children = set()
    for site in (a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() > 0):
        for group_smiles in SUBSTITUENTS:
            child = _attach(mol, site, group_smiles)
            if child:
                children.add(child)
    children.discard(Chem.MolToSmiles(mol))
    return tuple(sorted(children))


def _attach(mol: Chem.Mol, site: int, group_smiles: str) -> str:
    group, dummy, anchor = _substituent(group_smiles)
    offset = mol.GetNumAtoms()
    combined = Chem.RWMol(Chem.CombineMols(mol, group))
    combined.AddBond(site, offset + anchor, Chem.BondType.SINGLE)
    atom = combined.GetAtomWithIdx(site)
    if atom.GetNumExplicitHs():  # an aromatic [nH] or a bracket atom: the group takes its hydrogen's place
        atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
    combined.RemoveAtom(offset + dummy)
    try:
        Chem.SanitizeMol(combined)
    except (ValueError, RuntimeError):  # RDKit's sanitisation errors (valence, kekulisation)
        return ""
    return Chem.MolToSmiles(combined)


def decorations(parents: Sequence[str], per_parent: int, seed: int, workers: int = 1) -> list[list[str]]:
    """Per parent, ``per_parent`` of :func:`all_decorations` drawn without replacement (all of them when there
    are fewer); the same ``seed`` and parents give the same draws whatever ``workers`` is.

    >>> decorations(["c1ccccc1", "not a molecule"], 3, seed=0)[1]
    []
    """
    from designers.chem import _parallel

    chunks = [(list(parents[i:i + CHUNK]), per_parent, (seed, i // CHUNK)) for i in range(0, len(parents), CHUNK)]
    return [children for part in _parallel(_decorations_chunk, chunks, workers) for children in part]


def _decorations_chunk(args: tuple[list[str], int, tuple[int, int]]) -> list[list[str]]:
    parents, per_parent, seed = args
    rng = random.Random(f"{seed[0]}/{seed[1]}")
    drawn = []
    for parent in parents:
        children = all_decorations(parent)
        drawn.append(list(children) if len(children) <= per_parent else rng.sample(children, per_parent))
    return drawn
