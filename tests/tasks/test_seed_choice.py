"""Seed choice: the protocol's lowest-scoring seeds, or de novo (δ = 0, no seeds file) the best of the pool."""

from types import SimpleNamespace

import numpy as np
import torch

from designers.molecule import MoleculeDesigner
from tasks.pure_stages import DesignData, choose_seeds

POOL = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCCCC"]
SCORES = np.array([0.5, -2.0, 3.0, np.nan, 1.0])


def data() -> DesignData:
    empty = torch.zeros(0)
    return DesignData(empty, empty, empty, empty, empty, POOL, SCORES, "test", 0)


def never_label(*args):
    raise AssertionError("the pool is labelled already: no oracle call")


def test_the_protocol_starts_from_the_lowest_scoring_designs():
    seeds = choose_seeds(MoleculeDesigner(workers=1), data(), SimpleNamespace(seeds_file=None, n_seeds=2), never_label)
    assert seeds.designs == ["c1ccccc1", "CCO"]
    assert seeds.scores.tolist() == [-2.0, 0.5]


def test_de_novo_starts_from_the_best_designs_of_the_labelled_pool():
    designer = MoleculeDesigner(workers=1, similarity_threshold=0.0)
    seeds = choose_seeds(designer, data(), SimpleNamespace(seeds_file=None, n_seeds=3), never_label)
    assert seeds.designs == ["CC(=O)O", "CCCCCC", "CCO"]  # the unlabelled (NaN) design is never a seed
