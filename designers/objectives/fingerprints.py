"""The fingerprints GuacaMol's similarity terms use, and Tanimoto similarity on them.

GuacaMol's ECFP/FCFP and atom pairs are *count* fingerprints, unfolded (``GetMorganFingerprint(mol, 2)`` in the
RDKit of 2019), and the Tanimoto similarity of count vectors is Σmin/Σmax over the counts, not the bit-vector one.
RDKit's fingerprint generators give the same sparse count vectors (checked against the old calls: identical
similarities), so they are used here. PHCO is RDKit's 2-D pharmacophore fingerprint with Gobbi & Poppinger's
feature definitions.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator as generators

FINGERPRINTS = ("ECFP4", "ECFP6", "FCFP4", "FCFP6", "AP", "PHCO")


@lru_cache(maxsize=None)
def _generator(kind: str):
    if kind in ("ECFP4", "ECFP6"):
        return generators.GetMorganGenerator(radius=2 if kind == "ECFP4" else 3)
    if kind in ("FCFP4", "FCFP6"):
        return generators.GetMorganGenerator(radius=2 if kind == "FCFP4" else 3,
                                             atomInvariantsGenerator=generators.GetMorganFeatureAtomInvGen())
    if kind == "AP":
        return generators.GetAtomPairGenerator(maxDistance=10)
    raise ValueError(f"unknown fingerprint {kind!r}; choose one of {', '.join(FINGERPRINTS)}")


def fingerprint(mol: Chem.Mol, kind: str) -> Any:
    """The ``kind`` fingerprint of ``mol`` (one of :data:`FINGERPRINTS`)."""
    if kind == "PHCO":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    return _generator(kind).GetSparseCountFingerprint(mol)


def tanimoto(a: Any, b: Any) -> float:
    return float(DataStructs.TanimotoSimilarity(a, b))
