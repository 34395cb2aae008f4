"""RDKit oracles for molecules, with no torch import so worker processes start fast.

Penalized logP follows the JT-VAE constrained-optimisation benchmark (Jin et al. 2018, whose protocol MolDQN and
MoFlow reuse): Crippen logP − SA score − ring penalty, where the ring penalty is ``max(0, largest ring − 6)``.
Note its known trap: long saturated carbon chains raise it without limit, so it is always reported beside QED,
SA and the Lipinski pass rate.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Sequence

import numpy as np
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdFingerprintGenerator
from rdkit.Contrib.SA_Score import sascorer

from advdesign.interrupts import quiet_worker

RDLogger.DisableLog("rdApp.*")

OBJECTIVES = ("plogp", "qed")  # and every task of designers.objectives.tasks, by name
#: Side quantities the oracle returns with every score (cheap; QED is not, so it is a separate report).
ORACLE_EXTRAS = ("logp", "sa", "ring_penalty", "mol_weight", "lipinski")
_MORGAN_SIZE = 2048
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=_MORGAN_SIZE)


#: Memo of :func:`canonical_smiles` (a search asks for the same molecules' keys again and again); a dict rather
#: than ``lru_cache`` so that SMILES canonicalised in worker processes (:func:`decode_selfies`) are remembered too.
_CANONICAL: dict[str, str | None] = {}
_CANONICAL_MAX = 1 << 19


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES, or ``None`` for an unparsable or empty molecule (memoised)."""
    if smiles in _CANONICAL:
        return _CANONICAL[smiles]
    value = _canonical(smiles)
    _remember({smiles: value})
    return value


def _canonical(smiles: str) -> str | None:
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() > 0 else None


def _remember(canonical: dict[str, str | None]) -> None:
    if len(_CANONICAL) + len(canonical) > _CANONICAL_MAX:
        _CANONICAL.clear()
    _CANONICAL.update(canonical)


def ring_penalty(mol: Chem.Mol) -> int:
    largest = max((len(ring) for ring in mol.GetRingInfo().AtomRings()), default=0)
    return max(0, largest - 6)


def lipinski_pass(mol: Chem.Mol, logp: float | None = None, mol_weight: float | None = None) -> bool:
    """Lipinski's rule of five with no violation allowed."""
    logp = Crippen.MolLogP(mol) if logp is None else logp
    mol_weight = Descriptors.MolWt(mol) if mol_weight is None else mol_weight
    return mol_weight <= 500 and logp <= 5 and Lipinski.NumHDonors(mol) <= 5 and Lipinski.NumHAcceptors(mol) <= 10


def score_molecule(smiles: str, objective: str) -> tuple[float, str | None, tuple[float, ...]]:
    """``(score, failure, extras)`` for one SMILES; ``failure`` names the reason when it cannot be scored."""
    nan_extras = (math.nan,) * len(ORACLE_EXTRAS)
    if not smiles:
        return math.nan, "empty molecule", nan_extras
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return math.nan, f"invalid SMILES {smiles!r}", nan_extras
    logp = Crippen.MolLogP(mol)
    sa = sascorer.calculateScore(mol)
    rings = ring_penalty(mol)
    weight = Descriptors.MolWt(mol)
    if objective == "plogp":
        score = logp - sa - rings
    elif objective == "qed":
        score = QED.qed(mol)
    else:
        from designers.objectives.tasks import score_task

        score = score_task(objective, mol)
    return score, None, (logp, sa, float(rings), weight, float(lipinski_pass(mol, logp, weight)))


def _score_chunk(args: tuple[list[str], str]) -> list[tuple[float, str | None, tuple[float, ...]]]:
    smiles, objective = args
    return [score_molecule(s, objective) for s in smiles]


def _qed_chunk(smiles: list[str]) -> list[float]:
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if s else None
        out.append(QED.qed(mol) if mol is not None and mol.GetNumAtoms() else math.nan)
    return out


_POOL: ProcessPoolExecutor | None = None


def _pool(workers: int) -> ProcessPoolExecutor:
    # Forked (as torch's DataLoader does): spawn would re-run a user's unguarded __main__ script in every
    # worker. The workers only run RDKit, never the parent's threads' code.
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), initializer=quiet_worker)
    return _POOL


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def _parallel(fn, chunks: list, workers: int) -> list:
    # A daemonic process may not have children (multiprocessing refuses to start them), and Dask's worker
    # processes are daemonic by default (distributed.worker.daemon): there the scoring runs in-process. Dask
    # already spreads the oracle batches over its workers, so nothing is lost.
    if workers <= 1 or len(chunks) <= 1 or multiprocessing.current_process().daemon:
        return [fn(c) for c in chunks]
    return list(_pool(workers).map(fn, chunks))


def _chunks(items: Sequence, n_chunks: int) -> list[list]:
    size = max(1, math.ceil(len(items) / n_chunks))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def score_molecules(
    smiles: Sequence[str], objective: str = "plogp", workers: int | None = None, parallel_threshold: int = 256
) -> tuple[np.ndarray, list[str | None], dict[str, np.ndarray]]:
    """Batch oracle: scores, failure reasons and :data:`ORACLE_EXTRAS`, in process chunks across ``workers``.

    ``objective``: ``plogp``, ``qed`` or a task of :mod:`designers.objectives.tasks` by name."""
    if objective not in OBJECTIVES:
        from designers.objectives.tasks import TASKS

        if objective not in TASKS:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join((*OBJECTIVES, *TASKS))}")
    workers = default_workers() if workers is None else workers
    if len(smiles) < parallel_threshold:
        workers = 1
    results = [r for part in _parallel(_score_chunk, [(c, objective) for c in _chunks(smiles, workers * 4)], workers)
               for r in part]
    scores = np.array([r[0] for r in results], dtype=float)
    failures = [r[1] for r in results]
    extras = np.array([r[2] for r in results], dtype=float).reshape(len(results), len(ORACLE_EXTRAS))
    return scores, failures, {name: extras[:, i] for i, name in enumerate(ORACLE_EXTRAS)}


def qed_scores(smiles: Sequence[str], workers: int | None = None) -> np.ndarray:
    """QED (Bickerton et al. 2012) in parallel: ~1–2 ms a molecule, so it is computed for designs only."""
    workers = default_workers() if workers is None else workers
    if len(smiles) < 64:
        workers = 1
    return np.array([q for part in _parallel(_qed_chunk, _chunks(smiles, workers * 4), workers) for q in part])


#: Memo of Morgan fingerprints by SMILES: a search checks its seeds' similarity to thousands of candidates a
#: round, and parsing a seed again for every one of them was a third of the check's time.
_FINGERPRINTS: dict[str, object] = {}
_FINGERPRINTS_MAX = 1 << 16


def _fingerprint(smiles: str):
    if smiles not in _FINGERPRINTS:
        if len(_FINGERPRINTS) >= _FINGERPRINTS_MAX:
            _FINGERPRINTS.clear()
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        _FINGERPRINTS[smiles] = _MORGAN.GetFingerprint(mol) if mol is not None else None
    return _FINGERPRINTS[smiles]


def tanimoto_similarity(smiles_a: Sequence[str], smiles_b: Sequence[str], workers: int | None = None,
                        parallel_threshold: int = 2048) -> np.ndarray:
    """Pairwise (element i with element i) Tanimoto similarity of Morgan fingerprints, radius 2, 2048 bits; NaN
    where either SMILES does not parse. Above ``parallel_threshold`` pairs in process chunks across ``workers``
    (a new fingerprint costs ~0.3 ms, and a search round checks thousands of candidates)."""
    workers = default_workers() if workers is None else workers
    if len(smiles_a) < parallel_threshold:
        workers = 1
    pairs = list(zip(smiles_a, smiles_b))
    return np.array([s for part in _parallel(_similarity_chunk, _chunks(pairs, workers * 4), workers) for s in part],
                    dtype=float)


def morgan_counts(smiles: Sequence[str]) -> np.ndarray:
    """``(n, 2048)`` float32 ``log1p`` Morgan count fingerprints, radius 2 (zeros where a SMILES does not parse):
    the features of the design loop's ridge rescorer, on which a linear model predicts the PMO tasks (validation R²
    0.2–0.9 from 800 random MOSES molecules) where the one-hot ensemble does not (−0.5 to 0.4)."""
    out = np.zeros((len(smiles), _MORGAN_SIZE), dtype=np.float32)
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text) if text else None
        if mol is not None:
            out[i] = _MORGAN.GetCountFingerprintAsNumPy(mol)
    return np.log1p(out, out=out)


def _similarity_chunk(pairs: list[tuple[str, str]]) -> list[float]:
    out = []
    for a, b in pairs:
        fa, fb = _fingerprint(a), _fingerprint(b)
        out.append(DataStructs.TanimotoSimilarity(fa, fb) if fa is not None and fb is not None else math.nan)
    return out


def changed_parts(seed: str, design: str, timeout_s: int = 2, min_common: int = 3, rounds: int = 4
                  ) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """What an edit changed, as ``((seed atoms, seed bonds), (design atoms, design bonds))``: the indices (in each
    SMILES' own RDKit molecule) outside their common substructure, so the seed's are what the edit removed or
    altered and the design's what it added. A maximum common substructure is one connected piece, and an edit in
    the middle of a molecule leaves two: after the largest, the search repeats on what is left (up to ``rounds``
    pieces of at least ``min_common`` atoms). Rings match only whole rings (a chain closing into a ring is a change,
    not a common part); a search that runs past ``timeout_s`` keeps the largest piece found by then. A SMILES RDKit
    cannot read changes nothing (empty lists)."""
    from rdkit.Chem import rdFMCS

    mols = [Chem.MolFromSmiles(s) if s else None for s in (seed, design)]
    if any(m is None or m.GetNumAtoms() == 0 for m in mols):
        return ([], []), ([], [])
    common_atoms: list[set[int]] = [set(), set()]
    common_bonds: list[set[int]] = [set(), set()]
    for piece in range(rounds):
        rest = [_without_atoms(mol, common) for mol, common in zip(mols, common_atoms)]
        if any(r.GetNumAtoms() == 0 for r in rest):
            break
        found = rdFMCS.FindMCS(rest, timeout=timeout_s, ringMatchesRingOnly=True, completeRingsOnly=True)
        if found.numAtoms < (1 if piece == 0 else min_common):
            break
        query = Chem.MolFromSmarts(found.smartsString)
        matches = [r.GetSubstructMatch(query) for r in rest]
        if not all(matches):
            break
        for k, (r, match) in enumerate(zip(rest, matches)):
            original = [r.GetAtomWithIdx(i).GetIntProp("original") for i in match]
            common_atoms[k].update(original)
            for bond in query.GetBonds():
                common = mols[k].GetBondBetweenAtoms(original[bond.GetBeginAtomIdx()], original[bond.GetEndAtomIdx()])
                if common is not None:
                    common_bonds[k].add(common.GetIdx())
    out = tuple(([a.GetIdx() for a in mol.GetAtoms() if a.GetIdx() not in atoms],
                 [b.GetIdx() for b in mol.GetBonds() if b.GetIdx() not in bonds])
                for mol, atoms, bonds in zip(mols, common_atoms, common_bonds))
    return out[0], out[1]


def _without_atoms(mol: Chem.Mol, atoms: set[int]) -> Chem.Mol:
    """``mol`` less ``atoms``, each remaining atom carrying its index in ``mol`` (``original``); ring membership
    recomputed (a ring cut open is no longer one), no sanitising (a cut aromatic ring would not pass)."""
    editable = Chem.RWMol(mol)
    for atom in editable.GetAtoms():
        atom.SetIntProp("original", atom.GetIdx())
    for index in sorted(atoms, reverse=True):
        editable.RemoveAtom(index)
    rest = editable.GetMol()
    rest.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(rest)
    return rest


def _tokenize_chunk(smiles: list[str]) -> list[list[str] | str]:
    import selfies as sf

    out: list[list[str] | str] = []
    for s in smiles:
        try:
            out.append(list(sf.split_selfies(sf.encoder(s))))
        except Exception as exc:  # selfies raises EncoderError, RDKit-free; keep the reason, not the batch
            out.append(f"cannot encode {s!r} as SELFIES: {str(exc).splitlines()[0]}")
    return out


def _decode_chunk(strings: list[str]) -> list[str]:
    import selfies as sf

    return [_canonical(sf.decoder(s)) or "" for s in strings]


def decode_selfies(strings: Sequence[str], workers: int | None = None) -> list[str]:
    """Canonical SMILES of SELFIES strings (``""`` where nothing is left), in process chunks across ``workers``:
    ~0.7 ms a string in pure Python, the largest cost of a design-loop round. Each result is remembered as its
    own canonical form, so the designs' keys cost nothing afterwards."""
    workers = default_workers() if workers is None else workers
    if len(strings) < 256:  # ~0.2 s in one process: below that the pool's hand-over is not worth it
        workers = 1
    out = [s for part in _parallel(_decode_chunk, _chunks(strings, workers * 4), workers) for s in part]
    _remember({s: s for s in out if s})
    return out


def selfies_tokens(smiles: Sequence[str], workers: int | None = None) -> list[list[str] | str]:
    """SELFIES tokens per SMILES (~0.5 ms each), or a failure reason string in place of the tokens."""
    workers = default_workers() if workers is None else workers
    if len(smiles) < 512:
        workers = 1
    return [t for part in _parallel(_tokenize_chunk, _chunks(smiles, workers * 4), workers) for t in part]
