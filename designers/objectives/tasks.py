"""The GuacaMol / PMO goal-directed tasks that RDKit alone can compute, by name.

Each task is written from its published definition: Brown et al. 2019 (GuacaMol; the goal-directed suite v2, whose
scoring functions PMO — Gao et al. 2022, *Sample Efficiency Matters* — reuses through TDC's oracles under the names
below). Left out: PMO's DRD2, GSK3β and JNK3, which are trained classifiers, not RDKit computations. Beside PMO's
tasks the table holds GuacaMol's aripiprazole similarity and C11H24 isomers, which need nothing more.

Every score lies in [0, 1], higher is better. Use a task as ``--objective <name>``; ``--objective pmo:<name>`` is the
task as PMO scored it, which differs only where a formula term is (the isomers, sitagliptin and zaleplon MPO: PMO's
oracle, TDC 0.3.6, read the total atom count off the SMILES text).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from rdkit import Chem

from designers.objectives import descriptors as d
from designers.objectives.modifiers import Clipped, Gaussian, MaxGaussian, MinGaussian
from designers.objectives.scoring import Isomer, Mean, Property, AtomCount, Score, Similarity, Smarts

CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ARIPIPRAZOLE = "Clc4cccc(N3CCN(CCCCOc2ccc1c(NC(=O)CC1)c2)CC3)c4Cl"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR, MENTHOL = "CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
VALSARTAN_SMARTS = "CN(C=O)Cc1ccc(c2ccccc2)cc1"
HOP_START = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
#: The quinazoline scaffold both hop tasks are about (kept by the decoration hop, replaced by the scaffold hop).
HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"


@dataclass(frozen=True)
class Task:
    """A named objective: ``build()`` returns the molecule → score function; ``target`` is the molecule the task is
    about (rediscovered, resembled, or the start of a hop), where there is one."""

    name: str
    build: Callable[[], Score]
    description: str
    target: str | None = None


def _similar_properties(smiles: str) -> tuple[Property, Property]:
    """Gaussians around ``smiles``'s own logP (σ 0.2) and TPSA (σ 5): "the same properties as"."""
    mol = Chem.MolFromSmiles(smiles)
    return Property(d.logp, Gaussian(d.logp(mol), 0.2)), Property(d.tpsa, Gaussian(d.tpsa(mol), 5.0))


def _rediscovery(target: str) -> Callable[[], Score]:
    return lambda: Similarity(target, "ECFP4")


def _similarity(target: str, kind: str) -> Callable[[], Score]:
    return lambda: Similarity(target, kind, Clipped(upper_x=0.75))


def _sitagliptin(total: str = "atoms") -> Callable[[], Score]:
    def build() -> Score:
        logp, tpsa = _similar_properties(SITAGLIPTIN)
        return Mean((Similarity(SITAGLIPTIN, "ECFP4", Gaussian(0.0, 0.1)), logp, tpsa,
                     Isomer("C16H15F6N5O", total=total)))
    return build


def _zaleplon(total: str = "atoms") -> Callable[[], Score]:
    return lambda: Mean((Similarity(ZALEPLON, "ECFP4"), Isomer("C19H17N3O2", total=total)))


def _valsartan() -> Score:
    sitagliptin = "NC(CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F"
    logp, tpsa = _similar_properties(sitagliptin)
    bertz = Property(d.bertz, Gaussian(d.bertz(Chem.MolFromSmiles(sitagliptin)), 30.0))
    return Mean((Smarts(VALSARTAN_SMARTS), logp, tpsa, bertz))


_TASKS = [
    Task("celecoxib_rediscovery", _rediscovery(CELECOXIB), "ECFP4 Tanimoto to celecoxib", CELECOXIB),
    Task("troglitazone_rediscovery", _rediscovery(TROGLITAZONE), "ECFP4 Tanimoto to troglitazone", TROGLITAZONE),
    Task("thiothixene_rediscovery", _rediscovery(THIOTHIXENE), "ECFP4 Tanimoto to thiothixene", THIOTHIXENE),
    Task("aripiprazole_similarity", _similarity(ARIPIPRAZOLE, "ECFP4"),
         "ECFP4 Tanimoto to aripiprazole, full marks from 0.75", ARIPIPRAZOLE),
    Task("albuterol_similarity", _similarity(ALBUTEROL, "FCFP4"),
         "FCFP4 Tanimoto to albuterol, full marks from 0.75", ALBUTEROL),
    Task("mestranol_similarity", _similarity(MESTRANOL, "AP"),
         "atom-pair Tanimoto to mestranol, full marks from 0.75", MESTRANOL),
    Task("isomers_c11h24", lambda: Isomer("C11H24"), "closeness to the formula C11H24"),
    Task("isomers_c7h8n2o2", lambda: Isomer("C7H8N2O2"), "closeness to the formula C7H8N2O2"),
    Task("isomers_c9h10n2o2pf2cl", lambda: Isomer("C9H10N2O2PF2Cl"), "closeness to the formula C9H10N2O2PF2Cl"),
    Task("median1", lambda: Mean((Similarity(MENTHOL, "ECFP4"), Similarity(CAMPHOR, "ECFP4"))),
         "geometric mean of ECFP4 similarity to camphor and to menthol"),
    Task("median2", lambda: Mean((Similarity(TADALAFIL, "ECFP6"), Similarity(SILDENAFIL, "ECFP6"))),
         "geometric mean of ECFP6 similarity to tadalafil and to sildenafil"),
    Task("osimertinib_mpo", lambda: Mean((
        Similarity(OSIMERTINIB, "FCFP4", Clipped(upper_x=0.8)),
        Similarity(OSIMERTINIB, "ECFP6", MinGaussian(0.85, 0.1)),
        Property(d.tpsa, MaxGaussian(100.0, 10.0)),
        Property(d.logp, MinGaussian(1.0, 1.0)))),
        "like osimertinib (FCFP4 ≥ 0.8) but not too like it (ECFP6 ≤ 0.85), TPSA ≥ 100, logP ≤ 1", OSIMERTINIB),
    Task("fexofenadine_mpo", lambda: Mean((
        Similarity(FEXOFENADINE, "AP", Clipped(upper_x=0.8)),
        Property(d.tpsa, MaxGaussian(90.0, 10.0)),
        Property(d.logp, MinGaussian(4.0, 1.0)))),
        "fexofenadine made less greasy: atom-pair similarity ≥ 0.8, TPSA ≥ 90, logP ≤ 4", FEXOFENADINE),
    Task("ranolazine_mpo", lambda: Mean((
        Similarity(RANOLAZINE, "AP", Clipped(upper_x=0.7)),
        Property(d.logp, MaxGaussian(7.0, 1.0)),
        AtomCount("F", Gaussian(1.0, 1.0)),
        Property(d.tpsa, MaxGaussian(95.0, 20.0)))),
        "ranolazine with logP ≥ 7, TPSA ≥ 95 and one fluorine, atom-pair similarity ≥ 0.7", RANOLAZINE),
    Task("perindopril_mpo", lambda: Mean((
        Similarity(PERINDOPRIL, "ECFP4"),
        Property(d.aromatic_rings, Gaussian(2.0, 0.5)))),
        "perindopril with two aromatic rings", PERINDOPRIL),
    Task("amlodipine_mpo", lambda: Mean((
        Similarity(AMLODIPINE, "ECFP4"),
        Property(d.rings, Gaussian(3.0, 0.5)))),
        "amlodipine with three rings", AMLODIPINE),
    Task("sitagliptin_mpo", _sitagliptin(),
         "unlike sitagliptin (ECFP4 near 0) with its logP, TPSA and formula C16H15F6N5O", SITAGLIPTIN),
    Task("zaleplon_mpo", _zaleplon(), "like zaleplon with the formula C19H17N3O2", ZALEPLON),
    Task("valsartan_smarts", _valsartan,
         "valsartan's biphenyl-amide SMARTS with sitagliptin's logP, TPSA and Bertz complexity"),
    Task("deco_hop", lambda: Mean((
        Similarity(HOP_START, "PHCO", Clipped(upper_x=0.85)),
        Smarts("CS([#6])(=O)=O", inverse=True),
        Smarts("[#7]-c1ccc2ncsc2c1", inverse=True),
        Smarts(HOP_SCAFFOLD)), kind="arithmetic"),
        "keep the quinazoline scaffold, change the decorations, pharmacophore similarity ≥ 0.85", HOP_START),
    Task("scaffold_hop", lambda: Mean((
        Similarity(HOP_START, "PHCO", Clipped(upper_x=0.75)),
        Smarts("[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"),
        Smarts(HOP_SCAFFOLD, inverse=True)), kind="arithmetic"),
        "keep the decorations, replace the quinazoline scaffold, pharmacophore similarity ≥ 0.75", HOP_START),
]

#: The four tasks whose formula term PMO scored differently from GuacaMol (its TDC 0.3.6 oracle read the total atom
#: count off the SMILES text: :func:`designers.objectives.descriptors.smiles_text_atom_count`), as PMO scored them,
#: named ``pmo:<task>``; every other ``pmo:<task>`` is the GuacaMol task itself.
_PMO_SCORED = [
    Task("pmo:isomers_c7h8n2o2", lambda: Isomer("C7H8N2O2", total="smiles_text"),
         "closeness to the formula C7H8N2O2, its total atom count read off the SMILES text as PMO did"),
    Task("pmo:isomers_c9h10n2o2pf2cl", lambda: Isomer("C9H10N2O2PF2Cl", total="smiles_text"),
         "closeness to the formula C9H10N2O2PF2Cl, its total atom count read off the SMILES text as PMO did"),
    Task("pmo:sitagliptin_mpo", _sitagliptin("smiles_text"),
         "sitagliptin_mpo with the formula's total atom count read off the SMILES text as PMO did", SITAGLIPTIN),
    Task("pmo:zaleplon_mpo", _zaleplon("smiles_text"),
         "zaleplon_mpo with the formula's total atom count read off the SMILES text as PMO did", ZALEPLON),
]

TASKS: dict[str, Task] = {task.name: task for task in (*_TASKS, *_PMO_SCORED)}
#: PMO's 23 tasks less the three trained classifiers (DRD2, GSK3β, JNK3) and QED (a built-in objective already).
PMO_TASKS = tuple(task.name for task in _TASKS if task.name not in ("aripiprazole_similarity", "isomers_c11h24"))
#: Every PMO task RDKit can compute, as ``--objective`` values: the 19 tasks and the built-in ``qed``.
PMO_OBJECTIVES = ("qed", *PMO_TASKS)


def pmo_scored(name: str) -> str:
    """The objective that scores task ``name`` as PMO did: ``pmo:<name>`` where PMO's scoring differs, else ``name``."""
    return f"pmo:{name}" if f"pmo:{name}" in TASKS else name


@lru_cache(maxsize=None)
def task_function(name: str) -> Score:
    """The molecule → score function of task ``name`` (built once per process)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name].build()


def score_task(name: str, mol: Chem.Mol) -> float:
    return float(task_function(name)(mol))
