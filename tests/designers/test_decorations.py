"""Substituent decorations (designers/decorations.py): every group on every site with a hydrogen, once; the move
that finishes PMO's celecoxib rediscovery from the loop's stall; draws reproducible whatever the workers."""

import pytest
from rdkit import Chem

from designers.decorations import SUBSTITUENTS, all_decorations, decorations

CELECOXIB = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
WITHOUT_CF3 = "Cc1ccc(-c2ccnn2-c2ccc(S(N)(=O)=O)cc2)cc1"  # the design loop's best on run 1 of the rediscovery


def canonical(smiles):
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_benzene_gets_each_group_once_and_pyrrole_its_nh_too():
    assert all_decorations("c1ccccc1") == tuple(sorted(canonical(f"c1ccc({g[1:]})cc1") for g in SUBSTITUENTS))
    pyrrole = all_decorations("c1cc[nH]c1")
    assert len(pyrrole) == 3 * len(SUBSTITUENTS)            # two carbons and the nitrogen
    assert "Cn1cccc1" in pyrrole and all(Chem.MolFromSmiles(s) is not None for s in pyrrole)


def test_the_rediscoverys_stall_is_one_decoration_from_celecoxib():
    children = all_decorations(WITHOUT_CF3)
    assert canonical(CELECOXIB) in children
    heavy = Chem.MolFromSmiles(WITHOUT_CF3).GetNumHeavyAtoms()
    assert {Chem.MolFromSmiles(c).GetNumHeavyAtoms() - heavy for c in children} == {1, 2, 4}  # F…OH, OCH3/CN, CF3


def test_nothing_to_decorate_gives_nothing():
    assert all_decorations("not a molecule") == () and all_decorations("") == ()
    assert all_decorations("FC(F)(F)F") == ()               # no hydrogen anywhere


@pytest.mark.parametrize("workers", [1, 2])
def test_draws_are_a_sample_of_the_decorations_and_reproducible(workers):
    parents = [WITHOUT_CF3, "c1ccccc1", "CCO"] * 7               # 21 parents: two chunks
    drawn = decorations(parents, 5, seed=3, workers=workers)
    assert drawn == decorations(parents, 5, seed=3, workers=1)
    assert [len(d) for d in drawn[:3]] == [5, 5, 5]
    assert all(set(d) <= set(all_decorations(p)) and len(set(d)) == len(d) for p, d in zip(parents, drawn))
    assert sorted(decorations(["c1ccccc1"], 100, seed=0)[0]) == list(all_decorations("c1ccccc1"))
