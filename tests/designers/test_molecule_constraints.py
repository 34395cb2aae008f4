"""A medicinal chemist's constraints on the molecule designer: each one named when violated, all checked before
any oracle call (the search driver never sends an infeasible design), and bad settings refused in one line."""

import numpy as np
import pytest

from designers.base import OracleResult
from designers.molecule import MoleculeDesigner
from tasks.search.base import INFEASIBLE, SCORED, Proposal, Searcher
from tasks.search.driver import run_search

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"  # MW 180.2, SA 1.58, QED 0.55
SALICYLIC_ACID = "O=C(O)c1ccccc1O"  # MW 138.1
PHENOL = "Oc1ccccc1"


def _violation(design, **constraints):
    designer = MoleculeDesigner(similarity_threshold=0.0, workers=1, **constraints)
    return designer.constraints([design], [design]).violations[0]


@pytest.mark.parametrize("constraints, design, reason", [
    ({"max_sa": 1.5}, ASPIRIN, "SA score 1.58 > 1.5"),
    ({"min_mol_weight": 200}, ASPIRIN, "molecular weight 180.2 < 200"),
    ({"max_mol_weight": 150}, ASPIRIN, "molecular weight 180.2 > 150"),
    ({"min_qed": 0.9}, ASPIRIN, "QED 0.550 < 0.9"),
    ({"keep_smarts": "C(=O)[OH]"}, PHENOL, "lacks the kept substructure C(=O)[OH]"),
    ({"forbid_smarts": ("[N+](=O)[O-]", "C(=O)Oc")}, ASPIRIN, "contains the forbidden substructure C(=O)Oc"),
])
def test_each_constraint_names_its_violation_and_passes_what_meets_it(constraints, design, reason):
    assert _violation(design, **constraints) == reason
    satisfying = {"max_sa": ASPIRIN, "min_mol_weight": ASPIRIN, "max_mol_weight": SALICYLIC_ACID,
                  "min_qed": ASPIRIN, "keep_smarts": ASPIRIN, "forbid_smarts": SALICYLIC_ACID}
    relaxed = {"max_sa": 2.0, "min_mol_weight": 150, "min_qed": 0.5}
    key = next(iter(constraints))
    assert _violation(satisfying[key], **{key: relaxed.get(key, constraints[key])}) is None


def test_every_violation_of_a_design_is_named_and_the_values_go_to_the_table():
    designer = MoleculeDesigner(similarity_threshold=0.9, max_sa=1.5, min_mol_weight=200, min_qed=0.9,
                                forbid_smarts=("C(=O)Oc",), workers=1)
    report = designer.constraints([ASPIRIN, "CCO"], [SALICYLIC_ACID, "CCO"])
    reasons = report.violations[0].split("; ")
    assert [r.split(" ")[0] for r in reasons] == ["similarity", "SA", "molecular", "QED", "contains"]
    assert set(report.values) == {"similarity", "sa", "mol_weight", "qed"}
    assert report.values["mol_weight"][0] == pytest.approx(180.16, abs=0.01)


class _FixedProposals(Searcher):
    """Proposes the same designs for seed 0 in its first round, then nothing."""

    name = "fixed"
    batch_per_seed = 10

    def __init__(self, designs):
        self.designs = designs

    def ask(self, state):
        return [Proposal(0, list(self.designs))] if state.round == 1 else []


def test_the_driver_checks_every_constraint_before_the_oracle():
    designer = MoleculeDesigner(similarity_threshold=0.0, max_mol_weight=170, min_qed=0.3,
                                keep_smarts="c1ccccc1", forbid_smarts=("[N+](=O)[O-]",), workers=1)
    heavy, no_ring, nitro = "CC(=O)Oc1ccccc1C(=O)OC", "CCCCO", "Oc1ccc(cc1)[N+](=O)[O-]"
    sent = []

    def oracle(designs):
        sent.extend(designs)
        return designer.oracle(designs)

    result = run_search(_FixedProposals([SALICYLIC_ACID, heavy, no_ring, nitro, PHENOL]), designer, [ASPIRIN],
                        np.zeros(1), 10, score=oracle, max_rounds=2)
    assert sent == [SALICYLIC_ACID, PHENOL] and designer.oracle_calls == 2
    assert result.counters["infeasible"] == 3
    assert set(result.table["design"]) == {SALICYLIC_ACID, PHENOL}
    assert {"similarity", "mol_weight", "qed"} <= set(result.table.columns)  # the constraint values per design


def test_the_driver_tells_the_searcher_each_reason():
    designer = MoleculeDesigner(similarity_threshold=0.0, forbid_smarts=("[N+](=O)[O-]",), workers=1)
    told_back = []

    class Recording(_FixedProposals):
        def tell(self, state, told):
            told_back.extend(told)

    run_search(Recording(["Oc1ccc(cc1)[N+](=O)[O-]", PHENOL]), designer, [ASPIRIN], np.zeros(1), 10,
               score=lambda d: OracleResult(np.ones(len(d)), [None] * len(d)), max_rounds=1)
    (told,) = told_back
    assert told.status == [INFEASIBLE, SCORED]
    assert told.reasons[0] == "contains the forbidden substructure [N+](=O)[O-]"


@pytest.mark.parametrize("argv, message", [
    (["--keep-smarts", "C(("], "--keep-smarts: invalid SMARTS 'C(('"),
    (["--forbid-smarts", "Cl C[["], "--forbid-smarts: invalid SMARTS 'C[['"),
    (["--min-qed", "1.5"], "--min-qed: Input should be less than or equal to 1"),
    (["--min-mol-weight", "300", "--max-mol-weight", "200"], "--max-mol-weight: 200.0 is below the minimum"),
    (["--designer", "car", "--keep-smarts", "c1ccccc1"], "--keep-smarts is a molecule option"),
])
def test_bad_constraint_settings_fail_in_one_line(argv, message, capsys):
    from advdesign.cli import main

    assert main(["campaign", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_the_constraint_flags_reach_the_designer():
    from advdesign.cli import build_parser, campaign_parameters
    from designers import make_designer

    params = campaign_parameters(build_parser().parse_args(
        ["campaign", "--forbid-smarts", "[N+](=O)[O-] C(=O)Cl", "--keep-smarts", "c1ccccc1", "--min-qed", "0.4",
         "--min-mol-weight", "150", "--max-mol-weight", "450", "--max-sa", "4"]))
    designer = make_designer("molecule", **params.designer.settings())
    assert designer.forbid_smarts == ("[N+](=O)[O-]", "C(=O)Cl") and designer.keep_smarts == "c1ccccc1"
    assert (designer.min_qed, designer.min_mol_weight, designer.max_mol_weight, designer.max_sa) == (0.4, 150, 450, 4)
