import numpy as np
import pytest
import torch

from designers.base import Designer
from designers.molecule import MoleculeDesigner

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def designer():
    return MoleculeDesigner(workers=1)


def test_it_implements_the_designer_protocol(designer):
    assert isinstance(designer, Designer)
    assert designer.input_shape == (designer.max_length, len(designer.alphabet))
    assert designer.alphabet[0] == "[nop]"


def test_selfies_one_hot_round_trip_on_moses_molecules(designer):
    smiles = designer.sample(200, np.random.default_rng(0))
    x = designer.encode(smiles)
    assert x.shape == (200, *designer.input_shape)
    assert torch.equal(x.sum(dim=-1), torch.ones(200, designer.max_length))
    assert designer.decode(x) == [designer.key(s) for s in smiles]


def test_every_relaxed_point_decodes_to_a_molecule(designer):
    x = torch.rand(64, *designer.input_shape, generator=torch.Generator().manual_seed(0))
    decoded = designer.decode(x)
    assert all(designer.parse(s) == s for s in decoded if s)
    assert sum(1 for s in decoded if s) >= 60


def test_ties_at_the_box_edge_go_to_the_seed_token(designer):
    seed = designer.encode([ASPIRIN])
    saturated = torch.ones_like(seed)  # every token tied at 1
    assert designer.decode(designer.discretize(saturated, reference=seed)) == [designer.key(ASPIRIN)]


def test_encode_names_every_culprit(designer):
    with pytest.raises(ValueError, match=r"outside the MOSES alphabet"):
        designer.encode([ASPIRIN, "[Se]1C=CC=C1"])
    with pytest.raises(ValueError, match=r"SELFIES tokens; the vocabulary allows"):
        designer.encode(["C" * 200])


def test_oracle_counts_calls_and_reports_failures(designer):
    before = designer.oracle_calls
    result = designer.oracle([ASPIRIN, "not a molecule"])
    assert designer.oracle_calls == before + 2
    assert result.valid.tolist() == [True, False]
    assert result.extras["lipinski"][0] == 1.0


def test_constraints_similarity_and_bounds():
    designer = MoleculeDesigner(similarity_threshold=0.4, max_mol_weight=200, workers=1)
    report = designer.constraints([ASPIRIN, "OC(=O)c1ccccc1O", "CCCCCCCC"], [ASPIRIN, ASPIRIN, ASPIRIN])
    assert report.violations[0] is None and report.values["similarity"][0] == 1.0
    assert report.violations[2].startswith("similarity")
    assert MoleculeDesigner(max_mol_weight=150, workers=1).constraints([ASPIRIN], [ASPIRIN]).violations[0] \
        .startswith("molecular weight")


def test_parse_rejects_invalid_smiles_with_the_text(designer):
    assert designer.parse(" c1ccccc1 ") == "c1ccccc1"
    with pytest.raises(ValueError, match="invalid SMILES 'C1CC'"):
        designer.parse("C1CC")


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="plogp, qed"):
        MoleculeDesigner(objective="logp")
    with pytest.raises(ValueError, match="similarity_threshold"):
        MoleculeDesigner(similarity_threshold=1.5)


def test_render_writes_a_png(designer, tmp_path):
    path = tmp_path / "pairs.png"
    designer.render([(ASPIRIN, "OC(=O)c1ccccc1O")], str(path), ["1.0→2.0"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_are_shared_across_constraints_but_not_objectives():
    from designers.base import designer_fingerprint

    base = designer_fingerprint(MoleculeDesigner())
    assert designer_fingerprint(MoleculeDesigner(similarity_threshold=0.6, max_sa=4.5, workers=1)) == base
    assert designer_fingerprint(MoleculeDesigner(objective="qed")) != base


def test_changed_parts_are_the_atoms_and_bonds_outside_the_common_substructure():
    from designers.chem import changed_parts

    assert changed_parts("CCO", "CCN") == (([2], [1]), ([2], [1]))  # the O and its bond, replaced by an N
    assert changed_parts("c1ccccc1", "Cc1ccccc1") == (([], []), ([0], [0]))  # a methyl added, nothing removed
    assert changed_parts(ASPIRIN, ASPIRIN) == (([], []), ([], []))
    # An edit in the middle leaves two common pieces; both count as unchanged, only the O → N and its bonds changed.
    assert changed_parts("c1ccccc1CCOCCC1CCCCC1", "c1ccccc1CCNCCC1CCCCC1") == (([8], [7, 8]), ([8], [7, 8]))
    # A chain closing into a ring is a change, not a common part (rings match rings only).
    (seed_atoms, _), (design_atoms, _) = changed_parts("CCCCCC", "C1CCCCC1")
    assert seed_atoms == design_atoms == list(range(6))


def _highlighted_pixels(path) -> int:
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((rgb[..., 0] == 255) & (abs(rgb[..., 1] - 128) <= 2) & (abs(rgb[..., 2] - 128) <= 2)).sum())


def test_render_highlights_what_the_edit_changed_and_names_objective_and_similarity(designer, tmp_path):
    changed, unchanged = tmp_path / "changed.png", tmp_path / "unchanged.png"
    designer.render([(ASPIRIN, "OC(=O)c1ccccc1O")], str(changed), ["1.00 -> 2.00"])
    designer.render([(ASPIRIN, ASPIRIN)], str(unchanged), ["1.00 -> 1.00"])
    # Anti-aliased red oxygen labels give a few such pixels; a highlight gives over a thousand.
    assert _highlighted_pixels(changed) > 500 > 100 > _highlighted_pixels(unchanged)
    assert designer.legends([(ASPIRIN, "OC(=O)c1ccccc1O")], ["1.00 -> 2.00"]) == [
        "seed 0 (penalized logP)", "design 0: 1.00 -> 2.00, similarity 0.45"]
    assert MoleculeDesigner(objective="qed").legends([(ASPIRIN, ASPIRIN)]) == ["seed 0 (QED)", "design 0, similarity 1.00"]
