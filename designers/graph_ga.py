"""Graph GA's operators on molecular graphs (Jensen 2019, *A graph-based genetic algorithm and generative
model/Monte Carlo tree search for the exploration of chemical space*, Chemical Science), from ``mol_ga`` (A. Tripp's
maintained version of Jensen's code, the one without size limits): a crossover cuts each parent at a random ring or
chain bond and joins a fragment of each; a mutation inserts, appends, deletes or changes an atom, changes a bond
order, adds or opens a ring.

Unlike a SELFIES edit, a graph crossover keeps whole rings and chains intact, which is why Graph GA leads the
token-level GAs on the PMO benchmark. No torch import: the searchers hand over SMILES and get SMILES back.
"""

from __future__ import annotations

import random
from typing import Sequence

from rdkit import RDLogger

#: PMO's tuned Graph GA mutates a child with this probability (Gao et al. 2022, their ``graph_ga`` settings).
MUTATION_RATE = 0.067


#: Pairs per chunk of work (and per random stream): fixed, so the children do not depend on the worker count.
CHUNK = 64


def offspring(first: Sequence[str], second: Sequence[str | None], seed: int,
              mutation_rate: float = MUTATION_RATE, workers: int = 1) -> list[str]:
    """Per pair, a child of ``first[i]`` and ``second[i]`` (Graph GA crossover, then a mutation with probability
    ``mutation_rate``), or, where ``second[i]`` is ``None``, a mutant of ``first[i]``; canonical SMILES, ``""``
    where the operators found nothing valid. ~8 ms a child in RDKit, so chunks of :data:`CHUNK` pairs run across
    ``workers`` processes; the same ``seed`` and parents give the same children whatever ``workers`` is.

    >>> kids = offspring(["c1ccccc1CCO", "CC(=O)Nc1ccc(O)cc1"], ["CCN(CC)CC", None], seed=0)
    >>> len(kids), all(isinstance(k, str) for k in kids)
    (2, True)
    """
    from designers.chem import _parallel

    if len(first) != len(second):
        raise ValueError(f"offspring needs one partner per parent, got {len(first)} parents and {len(second)}")
    chunks = [(list(first[i:i + CHUNK]), list(second[i:i + CHUNK]), (seed, i // CHUNK), mutation_rate)
              for i in range(0, len(first), CHUNK)]
    return [child for part in _parallel(_offspring_chunk, chunks, workers) for child in part]


def _offspring_chunk(args: tuple[list[str], list[str | None], tuple[int, int], float]) -> list[str]:
    from mol_ga.graph_ga.gen_candidates import mutate, reproduce

    first, second, seed, mutation_rate = args
    RDLogger.DisableLog("rdApp.*")
    rng = random.Random(f"{seed[0]}/{seed[1]}")
    children = []
    for a, b in zip(first, second):
        try:
            child = mutate(a, rng) if b is None else reproduce(a, b, mutation_rate, rng)
        except (ValueError, RuntimeError):  # an RDKit reaction that cannot sanitise its product
            child = None
        children.append(child or "")
    return children
