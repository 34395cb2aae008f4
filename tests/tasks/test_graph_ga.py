"""The Graph GA black box (tasks/search/graph_ga.py): children of the seed's own lineage under a seed bound, of
every seed's de novo; molecules only; the budget and no-repeat rules of every black box."""

import numpy as np
import pytest
from rdkit import Chem

from designers import make_designer
from tasks.search.base import SearchState
from tasks.search.driver import run_search
from tasks.search.registry import black_box_names, make_black_box

#: Each seed has an element no other seed has, so a child's elements tell which lineages made it.
SEEDS = ["Oc1ccc(CCCC)cc1", "ClCC1CCNCC1", "CSCc1ccc(F)cc1"]
OWN = [{"O"}, {"Cl", "N"}, {"S", "F"}]


def elements(smiles):
    return {atom.GetSymbol() for atom in Chem.MolFromSmiles(smiles).GetAtoms()}


def children(similarity_threshold):
    designer = make_designer("molecule", objective="qed", similarity_threshold=similarity_threshold, workers=1)
    state = SearchState(designer, SEEDS, designer.oracle(SEEDS).scores, 20)
    searcher = make_black_box("graph-ga", designer, seed=0, mutation_rate=0.0, proposals_per_seed=40)
    return {p.seed_index: p.designs for p in searcher.ask(state)}


def test_under_a_seed_bound_children_come_from_the_seeds_own_lineage():
    for i, kids in children(0.4).items():
        assert len(kids) > 20
        others = set().union(*(OWN[j] for j in range(len(SEEDS)) if j != i))
        assert not any(elements(k) & others for k in kids)


def test_de_novo_children_mix_the_lineages_of_every_seed():
    for i, kids in children(0.0).items():
        others = set().union(*(OWN[j] for j in range(len(SEEDS)) if j != i))
        assert sum(bool(elements(k) & others) for k in kids) > len(kids) / 2


def test_graph_ga_is_offered_for_molecules_only_and_keeps_the_budget():
    with pytest.raises(ValueError, match="unknown baseline 'graph-ga' for the tokens designer"):
        make_black_box("graph-ga", make_designer("tokens"))
    assert "graph-ga" not in black_box_names(make_designer("tokens"))
    designer = make_designer("molecule", objective="qed", similarity_threshold=0.3, workers=1)
    scores = designer.oracle(SEEDS).scores
    before = designer.oracle_calls
    result = run_search(make_black_box("graph-ga", designer), designer, SEEDS, scores, 15)
    table = result.table
    assert designer.oracle_calls - before == len(table) and table.groupby("seed_index").size().max() <= 15
    assert not table.duplicated(["seed_index", "design"]).any() and not (table["design"] == table["seed"]).any()
    assert (designer.constraints(list(table["design"]), list(table["seed"])).values["similarity"] >= 0.3).all()
    assert (table.groupby("seed_index")["true_score"].max().to_numpy() > np.asarray(scores)).all()


def test_de_novo_no_child_is_verified_for_two_seeds():
    designer = make_designer("molecule", objective="qed", similarity_threshold=0.0, workers=1)
    scores = designer.oracle(SEEDS).scores
    table = run_search(make_black_box("graph-ga", designer, population=6), designer, SEEDS, scores, 30).table
    assert len(table) > 60 and table.groupby("seed_index").size().max() <= 30
    assert not table["design"].duplicated().any() and not table["design"].isin(table["seed"]).any()
