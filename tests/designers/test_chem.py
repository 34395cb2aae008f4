import math

import pytest
from rdkit import Chem
from rdkit.Chem import Crippen
from rdkit.Contrib.SA_Score import sascorer

from designers import chem

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_qed_of_aspirin_is_the_published_value():
    # Bickerton et al. (2012) report QED(aspirin) = 0.55; RDKit gives 0.5501.
    assert chem.qed_scores([ASPIRIN])[0] == pytest.approx(0.55, abs=0.005)


def test_penalized_logp_is_logp_minus_sa_minus_large_ring_penalty():
    cyclooctane = "C1CCCCCCC1"
    scores, failures, extras = chem.score_molecules([ASPIRIN, cyclooctane], "plogp", workers=1)
    assert failures == [None, None]
    mol = Chem.MolFromSmiles(cyclooctane)
    assert extras["ring_penalty"].tolist() == [0.0, 2.0]
    assert scores[1] == pytest.approx(Crippen.MolLogP(mol) - sascorer.calculateScore(mol) - 2.0)
    # Aspirin: Crippen logP 1.31, SA 1.58 → about −0.27.
    assert scores[0] == pytest.approx(1.3101 - 1.5800, abs=0.01)


def test_long_carbon_chains_show_the_known_plogp_trap():
    short, long = chem.score_molecules(["CCCCCC", "C" * 30], "plogp", workers=1)[0]
    assert long > short + 8


def test_invalid_and_empty_molecules_get_reasons_not_numbers():
    scores, failures, _ = chem.score_molecules([ASPIRIN, "C1CC", ""], "plogp", workers=1)
    assert failures[0] is None and not math.isnan(scores[0])
    assert "invalid SMILES 'C1CC'" in failures[1] and math.isnan(scores[1])
    assert failures[2] == "empty molecule"


def test_parallel_scoring_equals_serial_scoring():
    smiles = [ASPIRIN, "c1ccccc1O", "CCN(CC)CC", "C1CCCCCCC1"] * 80
    serial = chem.score_molecules(smiles, "plogp", workers=1)[0]
    parallel = chem.score_molecules(smiles, "plogp", workers=2, parallel_threshold=10)[0]
    assert serial.tolist() == parallel.tolist()


def test_tanimoto_similarity_of_morgan_fingerprints():
    sims = chem.tanimoto_similarity([ASPIRIN, ASPIRIN, "CCCC"], [ASPIRIN, "OC(=O)c1ccccc1O", "c1ccccc1"])
    assert sims[0] == 1.0
    assert 0.3 < sims[1] < 0.8  # salicylic acid shares aspirin's scaffold
    assert sims[2] == 0.0


def test_lipinski_rule_of_five():
    assert chem.lipinski_pass(Chem.MolFromSmiles(ASPIRIN))
    assert not chem.lipinski_pass(Chem.MolFromSmiles("C" * 40))  # logP far above 5


def test_parallel_selfies_decoding_equals_serial_and_remembers_the_keys():
    import selfies as sf

    strings = [sf.encoder(s) for s in [ASPIRIN, "CCO", "c1ccccc1N", "CC(C)CC(=O)O"]] * 300 + ["[nop]", "[Branch1]"]
    serial = chem.decode_selfies(strings, workers=1)
    chem._CANONICAL.clear()
    parallel = chem.decode_selfies(strings, workers=2)
    assert parallel == serial
    assert parallel[0] == Chem.MolToSmiles(Chem.MolFromSmiles(ASPIRIN)) and parallel[-2:] == ["", ""]
    # Decoded in the workers, yet the parent already knows each result's canonical form: no second parse.
    assert all(chem._CANONICAL[s] == s for s in set(parallel) if s)
