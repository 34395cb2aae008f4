"""User objectives and the literature's tasks: through the molecule designer's oracle, its cache identity, the
car's objectives, one-line errors for bad ``--objective`` strings, and each task against known values."""

import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem, Descriptors, rdMolDescriptors

from designers.molecule import MoleculeDesigner
from designers.objectives import ObjectiveError, normalise
from designers.objectives.tasks import PMO_TASKS, TASKS, score_task

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PHENOL = "Oc1ccccc1"
#: The test objective refuses this molecule with an exception, and returns NaN for the next one.
REFUSED, UNSCORABLE = "CCCCCl", "CCCCBr"


def heavy_atoms(smiles):
    """A user objective: heavy atoms per molecule; raises for the whole batch if :data:`REFUSED` is in it."""
    out = []
    for s in smiles:
        if s == REFUSED:
            raise ValueError("no docking pose")
        mol = Chem.MolFromSmiles(s)
        out.append(math.nan if s == UNSCORABLE else float(mol.GetNumHeavyAtoms()))
    return out


def versioned(smiles):
    return [1.0] * len(smiles)


versioned.__version__ = "3"
NOT_CALLABLE = 42


def one_score(smiles):
    return [1.0]


def drag_per_mass(components):
    """A car objective on the oracle's components: less drag area per tonne is better."""
    return -components["drag_area"] / (components["m"] / 1000.0)


# --- user objectives -----------------------------------------------------------------------------------------------


def test_a_user_objective_scores_through_the_designer_oracle_and_names_each_failure():
    designer = MoleculeDesigner(objective="test_objectives:heavy_atoms", workers=1)
    result = designer.oracle([ASPIRIN, REFUSED, "not a molecule", UNSCORABLE, PHENOL])
    assert designer.oracle_calls == 5
    assert result.scores[0] == 13 and result.scores[4] == 7  # the rest of the batch is scored
    assert result.failures[0] is None and result.failures[4] is None
    assert "raised ValueError on 'CCCCCl': no docking pose" in result.failures[1]
    assert result.failures[2] == "invalid SMILES 'not a molecule'"  # RDKit's failure; the callable never saw it
    assert "returned nan for 'CCCCBr'" in result.failures[3]
    assert np.isnan(result.scores[[1, 2, 3]]).all()
    assert not np.isnan(result.extras["sa"][0])  # RDKit's side quantities stay beside a user objective


def test_the_cache_identity_is_the_name_and_version():
    from designers.base import designer_fingerprint

    def fingerprint(objective):
        return designer_fingerprint(MoleculeDesigner(objective=objective, workers=1))

    plain = fingerprint("test_objectives:heavy_atoms")
    assert plain != fingerprint("test_objectives:heavy_atoms@2") != fingerprint("plogp")
    assert fingerprint("test_objectives:heavy_atoms@2") != fingerprint("test_objectives:heavy_atoms@3")
    assert plain != fingerprint("test_objectives:versioned")
    # A callable's __version__ is its version when the text gives none; the text's @version wins.
    assert normalise("test_objectives:versioned") == "test_objectives:versioned@3"
    assert normalise("test_objectives:versioned@7") == "test_objectives:versioned@7"
    assert MoleculeDesigner(objective="test_objectives:versioned").objective.endswith("@3")
    # Constraints never change a label: still shared.
    assert designer_fingerprint(MoleculeDesigner(objective="qed", min_qed=0.5, forbid_smarts=("Cl",))) == \
        fingerprint("qed")


def test_a_user_objective_runs_in_the_prefect_oracle_tasks(prefect_api):
    from prefect import flow

    from tasks.prefect_tasks import oracle_in_batches

    designer = MoleculeDesigner(objective="test_objectives:heavy_atoms", workers=1)

    @flow
    def label():
        return oracle_in_batches(designer, [ASPIRIN, REFUSED, PHENOL, "CCO"], batch_size=2)

    result = label()
    assert result.scores[[0, 2, 3]].tolist() == [13, 7, 3]
    assert "CCCCCl" in result.failures[1]


@pytest.mark.parametrize("text, culprit", [
    ("no_such_module_xyz:score", "cannot import module 'no_such_module_xyz'"),
    ("test_objectives:no_such_function", "has no attribute 'no_such_function'"),
    ("test_objectives:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not callable"),
    ("test_objectives:one_score", "returned 1 scores for 2 designs"),
    ("test_objectives:", "not of the form module.path:function"),
    ("logp", "unknown molecule objective 'logp'; choose one of plogp, qed, celecoxib_rediscovery"),
])
def test_bad_objective_strings_fail_in_one_line_before_any_work(text, culprit, capsys, monkeypatch):
    from advdesign.cli import main

    def no_work(*args, **kwargs):
        raise AssertionError("the campaign started")

    monkeypatch.setattr("flows.campaign.campaign", no_work)
    assert main(["campaign", "--quick", "--objective", text]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err, err
    with pytest.raises(ValueError, match="objective"):
        normalise(text) if text.endswith(("one_score", "drag_per_mass")) else MoleculeDesigner(objective=text)


def test_pmo_prefix_and_task_names_select_the_same_objective():
    from flows.parameters import DesignerParameters

    assert DesignerParameters(objective="pmo:median1").objective == "median1"
    assert DesignerParameters(objective="median1").settings()["objective"] == "median1"
    assert MoleculeDesigner(objective="pmo:qed", workers=1).objective == "qed"
    with pytest.raises(ObjectiveError, match="unknown car objective 'median1'"):
        normalise("median1", "car")


def test_the_objective_and_constraints_reach_the_mlflow_params():
    from flows.campaign import flat_params
    from flows.parameters import CampaignParameters

    params = CampaignParameters(preset="quick", designer={"objective": "test_objectives:versioned", "min_qed": 0.5,
                                                          "forbid_smarts": ["[N+](=O)[O-]"]})
    flat = flat_params(params)
    assert flat["designer.objective"] == "test_objectives:versioned@3"
    assert flat["designer.min_qed"] == 0.5 and flat["designer.forbid_smarts"] == ("[N+](=O)[O-]",)
    assert flat_params(CampaignParameters.quick("car"))["designer.objective"] == "top_speed"


# --- the car's objectives --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_flow(monkeypatch):
    """The car oracle without its flow solver: C_D 0.5 and 0.3, C_L 0."""
    from designers.car import CarDesigner

    def drag_coefficients(self, designs):
        drag = np.array([0.5, 0.3, 0.4, 0.6][: len(designs)])
        return drag, np.zeros(len(designs)), [None] * len(designs)

    monkeypatch.setattr(CarDesigner, "drag_coefficients", drag_coefficients)
    return CarDesigner


def test_car_objectives_top_speed_drag_area_and_a_user_callable(fake_flow):
    speed = fake_flow(threads=1)
    blueprints = speed.sample(2, np.random.default_rng(0))
    top = speed.oracle(blueprints)
    assert np.allclose(top.scores, top.extras["v"] * 3.6)
    drag = fake_flow(threads=1, objective="drag_area").oracle(blueprints)
    assert np.allclose(drag.scores, -top.extras["C_D"] * top.extras["A"])  # minimised: the score is −C_D·A
    assert (drag.scores < 0).all()
    user = fake_flow(threads=1, objective="test_objectives:drag_per_mass").oracle(blueprints)
    assert np.allclose(user.scores, -top.extras["drag_area"] / (top.extras["m"] / 1000))
    with pytest.raises(ValueError, match="unknown car objective 'qed'"):
        fake_flow(objective="qed")
    # Checked on the probe components before any work: a molecule function fails them all.
    assert normalise("test_objectives:drag_per_mass", "car") == "test_objectives:drag_per_mass"
    with pytest.raises(ObjectiveError, match="does it take the oracle components"):
        normalise("test_objectives:heavy_atoms", "car")


def test_the_car_objective_is_part_of_the_cache_key(fake_flow):
    from designers.base import designer_fingerprint

    assert designer_fingerprint(fake_flow(threads=1)) != designer_fingerprint(fake_flow(threads=1,
                                                                                         objective="drag_area"))


# --- the literature's tasks ------------------------------------------------------------------------------------------


def _score(name, smiles):
    return score_task(name, Chem.MolFromSmiles(smiles))


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if n.endswith(("_rediscovery", "_similarity"))])
def test_a_target_scores_one_on_its_rediscovery_or_similarity_task(name):
    assert _score(name, TASKS[name].target) == pytest.approx(1.0)
    assert 0.0 <= _score(name, ASPIRIN) < 0.5


def test_rediscovery_is_count_ecfp4_tanimoto_and_similarity_saturates_at_075():
    celecoxib = TASKS["celecoxib_rediscovery"].target
    # GuacaMol's ECFP4 is RDKit's unfolded *count* Morgan fingerprint, radius 2.
    expected = DataStructs.TanimotoSimilarity(AllChem.GetMorganFingerprint(Chem.MolFromSmiles(ASPIRIN), 2),
                                              AllChem.GetMorganFingerprint(Chem.MolFromSmiles(celecoxib), 2))
    assert _score("celecoxib_rediscovery", ASPIRIN) == pytest.approx(expected)
    albuterol_like = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1C"  # close to albuterol
    raw = DataStructs.TanimotoSimilarity(
        AllChem.GetMorganFingerprint(Chem.MolFromSmiles(albuterol_like), 2, useFeatures=True),
        AllChem.GetMorganFingerprint(Chem.MolFromSmiles(TASKS["albuterol_similarity"].target), 2, useFeatures=True))
    assert _score("albuterol_similarity", albuterol_like) == pytest.approx(min(1.0, raw / 0.75))


@pytest.mark.parametrize("name, isomer", [("isomers_c11h24", "CCCCCCCCCCC"), ("isomers_c11h24", "CC(CCC)CCCCCC"),
                                          ("isomers_c7h8n2o2", "NCc1ccc(cc1)[N+](=O)[O-]"),
                                          ("isomers_c9h10n2o2pf2cl", "NC(=O)c1cc(F)c(F)cc1CCNP(=O)Cl")])
def test_a_molecule_with_the_formula_scores_one_on_its_isomer_task(name, isomer):
    from designers.objectives.descriptors import parse_formula

    formula = TASKS[name].build().formula
    assert sorted(parse_formula(rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(isomer)))) == \
        sorted(parse_formula(formula))
    assert _score(name, isomer) == pytest.approx(1.0)


def test_isomer_penalties_match_guacamols_published_test():
    # GuacaMol's tests/test_scoring_functions.py: C11H24O against C11H24, geometric mean of C, H and the
    # total-atom term, whose one extra atom costs Gaussian(σ = 2) at distance 1.
    expected = (math.exp(-0.5 * (1 / 2) ** 2)) ** (1 / 3)
    for smiles in ("CCCCCCCCCCCO", "CC(CCC)COCCCCC", "CCCCOC(CC(C)CC)C"):
        assert _score("isomers_c11h24", smiles) == pytest.approx(expected)


def test_pmo_scored_its_formula_terms_off_the_smiles_text():
    from designers.objectives import normalise
    from designers.objectives.descriptors import smiles_text_atom_count

    # TDC 0.3.6's formula parser on the canonical SMILES: a ring-closure digit is read as a count, aromatic atoms
    # are not read, a bracket's H is: decalin 10 atoms read as 12, pyrrole as 1, alanine's [C@H] as 2.
    for smiles, read in (("C1CCC2CCCCC2C1", 12), ("c1cc[nH]c1", 1), ("C[C@H](N)C(=O)O", 7), ("ClCBr", 3)):
        assert smiles_text_atom_count(Chem.MolFromSmiles(smiles)) == read
    # 4-Nitrobenzylamine is C7H8N2O2 (every element term 1) but its text NCc1ccc([N+](=O)[O-])cc1 reads 5 atoms
    # for 19: the total term is exp(−½·(14/2)²), the geometric mean of five terms exp(−4.9); GuacaMol's gives 1.
    nitro = "NCc1ccc(cc1)[N+](=O)[O-]"
    assert _score("pmo:isomers_c7h8n2o2", nitro) == pytest.approx(math.exp(-4.9))
    assert _score("isomers_c7h8n2o2", nitro) == pytest.approx(1.0)
    # The same parts but the total: zaleplon's text reads 8 atoms for 41, so as PMO scored it, it is far from its own
    # task (GuacaMol's scoring: 0.42, test above).
    zaleplon = TASKS["zaleplon_mpo"].target
    assert _score("pmo:zaleplon_mpo", zaleplon) < 1e-6 and _score("zaleplon_mpo", zaleplon) > 0.4
    assert _score("pmo:sitagliptin_mpo", ASPIRIN) <= _score("sitagliptin_mpo", ASPIRIN)
    # pmo:<task> names the task as PMO scored it: a task of its own only where that differs.
    assert normalise("pmo:zaleplon_mpo") == "pmo:zaleplon_mpo" and normalise("pmo:median1") == "median1"
    assert {name for name in TASKS if name.startswith("pmo:")} == {
        "pmo:isomers_c7h8n2o2", "pmo:isomers_c9h10n2o2pf2cl", "pmo:sitagliptin_mpo", "pmo:zaleplon_mpo"}


def test_median_tasks_are_geometric_means_of_two_similarities():
    camphor, menthol = "CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O"
    between = DataStructs.TanimotoSimilarity(AllChem.GetMorganFingerprint(Chem.MolFromSmiles(camphor), 2),
                                             AllChem.GetMorganFingerprint(Chem.MolFromSmiles(menthol), 2))
    assert _score("median1", camphor) == pytest.approx(math.sqrt(between))
    assert _score("median1", menthol) == pytest.approx(math.sqrt(between))
    assert 0 <= _score("median2", ASPIRIN) < 0.3


def _descriptor_gaussians(smiles):
    mol = Chem.MolFromSmiles(smiles)
    return Descriptors.TPSA(mol), Descriptors.MolLogP(mol)


def test_mpo_tasks_on_their_own_target_molecules_as_the_definitions_give():
    tpsa, logp = _descriptor_gaussians(TASKS["osimertinib_mpo"].target)
    half = lambda x, mu, sigma: math.exp(-0.5 * ((x - mu) / sigma) ** 2)  # noqa: E731
    # Osimertinib: FCFP4 similarity 1 (clipped at 0.8: 1), ECFP6 similarity 1 past the 0.85 ceiling, TPSA ≥ 100,
    # logP ≤ 1, geometric mean.
    osimertinib = (1.0 * half(1.0, 0.85, 0.1) * half(min(tpsa, 100), 100, 10) * half(max(logp, 1), 1, 1)) ** 0.25
    assert _score("osimertinib_mpo", TASKS["osimertinib_mpo"].target) == pytest.approx(osimertinib)
    tpsa, logp = _descriptor_gaussians(TASKS["fexofenadine_mpo"].target)
    fexofenadine = (1.0 * half(min(tpsa, 90), 90, 10) * half(max(logp, 4), 4, 1)) ** (1 / 3)
    assert _score("fexofenadine_mpo", TASKS["fexofenadine_mpo"].target) == pytest.approx(fexofenadine)
    tpsa, logp = _descriptor_gaussians(TASKS["ranolazine_mpo"].target)
    ranolazine = (1.0 * half(min(logp, 7), 7, 1) * half(0, 1, 1) * half(min(tpsa, 95), 95, 20)) ** 0.25
    assert _score("ranolazine_mpo", TASKS["ranolazine_mpo"].target) == pytest.approx(ranolazine)
    # Amlodipine has two rings (three wanted, σ 0.5); perindopril has no aromatic ring (two wanted, σ 0.5).
    assert _score("amlodipine_mpo", TASKS["amlodipine_mpo"].target) == pytest.approx(math.exp(-1.0))
    assert _score("perindopril_mpo", TASKS["perindopril_mpo"].target) == pytest.approx(math.exp(-4.0))
    # Zaleplon is C17H15N5O, the task's formula C19H17N3O2: C, H, N off by 2, O by 1, 38 atoms for 41.
    isomer = math.exp((3 * -2.0 - 0.5 - 0.5 * (3 / 2) ** 2) / 5)
    assert _score("zaleplon_mpo", TASKS["zaleplon_mpo"].target) == pytest.approx(math.sqrt(isomer))
    # Sitagliptin has its own logP, TPSA and formula, but the similarity term wants it unlike itself: exp(−50).
    assert _score("sitagliptin_mpo", TASKS["sitagliptin_mpo"].target) == pytest.approx(math.exp(-50 / 4))


def test_hop_and_smarts_tasks_reward_the_right_substructures():
    start = TASKS["deco_hop"].target
    # The start molecule keeps the scaffold (1) but also both decorations meant to go (0, 0): (1 + 0 + 0 + 1)/4.
    assert _score("deco_hop", start) == pytest.approx(0.5)
    # It keeps the decoration (1) but also the scaffold meant to go (0): (1 + 1 + 0)/3.
    assert _score("scaffold_hop", start) == pytest.approx(2 / 3)
    without = "NC(CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F"  # sitagliptin: no valsartan SMARTS
    assert _score("valsartan_smarts", without) == 0.0
    assert _score("valsartan_smarts", "CCCCC(=O)N(C)Cc1ccc(-c2ccccc2)cc1") > 0.0


def test_every_task_scores_in_the_unit_interval_and_pmo_lists_nineteen():
    assert len(PMO_TASKS) == 19 and set(PMO_TASKS) <= set(TASKS)
    molecules = [ASPIRIN, PHENOL, "CCO", "c1ccc2ccccc2c1", "CN1CCC[C@H]1c1cccnc1", "OC(=O)CCc1ccc(F)cc1"]
    for name in TASKS:
        for smiles in molecules:
            assert 0.0 <= _score(name, smiles) <= 1.0, (name, smiles)


def test_a_task_is_a_designer_objective_scored_by_the_worker_pool():
    designer = MoleculeDesigner(objective="celecoxib_rediscovery", workers=1)
    result = designer.oracle([TASKS["celecoxib_rediscovery"].target, "not a molecule"])
    assert result.scores[0] == pytest.approx(1.0) and result.failures[1] == "invalid SMILES 'not a molecule'"


# --- end to end ----------------------------------------------------------------------------------------------------


def test_a_user_objective_runs_a_campaign_end_to_end(tmp_path, prefect_api):
    """``advdesign campaign --objective test_objectives:heavy_atoms``: the labelled data, the seeds and the
    verified designs are scored by the user's function; the seed it refuses is named, the others proceed."""
    import json

    from mlflow.tracking import MlflowClient

    from advdesign.cli import main

    seeds = tmp_path / "seeds.smi"
    seeds.write_text(f"{ASPIRIN}\n{REFUSED}\n{PHENOL}\nCC(=O)Nc1ccc(O)cc1\n")
    path, uri = tmp_path / "out.json", f"sqlite:///{tmp_path / 'm.db'}"
    argv = ["campaign", "--quick", "--n-labelled", "100", "--n-unlabelled", "0", "--n-pool", "0", "--epochs", "1",
            "--hidden", "16", "--defenses", "none", "--seeds", str(seeds), "--objective", "test_objectives:heavy_atoms",
            "--calls-per-seed", "3", "--batch-per-seed", "3", "--proposals-per-incumbent", "16", "--population", "1",
            "--ensemble-size", "1", "--finetune-epochs", "0", "--tracking-uri", uri, "--json", str(path)]
    assert main(argv) == 0
    summary = json.loads(path.read_text())
    assert summary["seed_errors"] == [f"{seeds}: seed 'CCCCCl' skipped: objective test_objectives:heavy_atoms "
                                      "raised ValueError on 'CCCCCl': no docking pose"]
    result = summary["defenses"]["none"]
    assert result["n_seeds"] == 3 and result["n_designs"] > 0
    params = MlflowClient(uri).get_run(summary["mlflow"]["parent_run_id"]).data.params
    assert params["designer.objective"] == "test_objectives:heavy_atoms"
