"""Labels kept in a folder: asked again for the same designs by the same oracle, no oracle call."""

import numpy as np

from designers.molecule import MoleculeDesigner
from tasks.pure_stages import StoredLabels, label_directly

DESIGNS = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]


def test_a_second_labeller_on_the_same_folder_reads_the_answers_back(tmp_path):
    designer = MoleculeDesigner(workers=1)
    first = StoredLabels(tmp_path, label_directly)(designer, DESIGNS, 2)
    assert designer.oracle_calls == 3
    again = StoredLabels(tmp_path, label_directly)(designer, DESIGNS, 2)
    assert designer.oracle_calls == 3
    assert again.scores.tobytes() == first.scores.tobytes()  # the exact bytes: checkpoints name them
    assert again.failures == first.failures and set(again.extras) == set(first.extras) and first.extras
    for name, values in first.extras.items():
        np.testing.assert_array_equal(again.extras[name], values)


def test_other_designs_or_another_oracle_are_labelled_afresh(tmp_path):
    designer = MoleculeDesigner(workers=1)
    StoredLabels(tmp_path, label_directly)(designer, DESIGNS, 2)
    StoredLabels(tmp_path, label_directly)(designer, DESIGNS[:2], 2)
    assert designer.oracle_calls == 5
    qed = MoleculeDesigner(workers=1, objective="qed")
    scores = StoredLabels(tmp_path, label_directly)(qed, DESIGNS, 2).scores
    assert qed.oracle_calls == 3 and np.all((scores > 0) & (scores < 1))
    # A constraint is no oracle setting: its labels are shared.
    strict = MoleculeDesigner(workers=1, similarity_threshold=0.6)
    StoredLabels(tmp_path, label_directly)(strict, DESIGNS, 2)
    assert strict.oracle_calls == 0
    assert len(list(tmp_path.glob("labels-*.json"))) == 3
