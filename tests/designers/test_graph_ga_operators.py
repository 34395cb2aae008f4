"""Graph GA's operators (designers/graph_ga.py): valid children mixing both parents' atoms, reproducible whatever
the worker count."""

import pytest
from rdkit import Chem

from designers import graph_ga

PHENOL_CHAIN, CHLORO_PIPERIDINE = "Oc1ccc(CCCC)cc1", "ClCC1CCNCC1"


def elements(smiles):
    return {atom.GetSymbol() for atom in Chem.MolFromSmiles(smiles).GetAtoms()}


def test_crossover_children_are_new_valid_molecules_made_of_both_parents():
    kids = graph_ga.offspring([PHENOL_CHAIN] * 60, [CHLORO_PIPERIDINE] * 60, seed=0, mutation_rate=0.0)
    valid = [k for k in kids if k]
    assert len(valid) > 40
    assert all(Chem.MolFromSmiles(k) is not None and Chem.MolToSmiles(Chem.MolFromSmiles(k)) == k for k in valid)
    assert not {PHENOL_CHAIN, CHLORO_PIPERIDINE} & set(valid)
    # Without mutation a child holds only its parents' elements, and some hold atoms only each parent has.
    assert all(elements(k) <= {"C", "O", "N", "Cl"} for k in valid)
    assert any({"O", "Cl"} <= elements(k) or {"O", "N"} <= elements(k) for k in valid)


def test_a_missing_partner_means_a_mutant_and_the_children_do_not_depend_on_the_workers():
    first = [PHENOL_CHAIN, CHLORO_PIPERIDINE] * 70   # three chunks of work
    second = [CHLORO_PIPERIDINE, None] * 70
    one = graph_ga.offspring(first, second, seed=5, workers=1)
    assert one == graph_ga.offspring(first, second, seed=5, workers=2)
    assert one != graph_ga.offspring(first, second, seed=6, workers=1)
    mutants = [k for k in one[1::2] if k]
    assert mutants and all(k != CHLORO_PIPERIDINE for k in mutants)


def test_parents_and_partners_must_pair_up():
    with pytest.raises(ValueError, match="2 parents and 1"):
        graph_ga.offspring([PHENOL_CHAIN, PHENOL_CHAIN], [None], seed=0)
