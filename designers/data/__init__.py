"""Offline data for the designers: MOSES SMILES from the ``molsets`` wheel and the vocabulary derived from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
VOCABULARY_FILE = DATA_DIR / "moses_selfies_vocabulary.json"


def moses_train_csv() -> Path:
    """Path of MOSES' training SMILES (1.58 M, ZINC Clean Leads, MIT licence) inside the ``molsets`` wheel.

    The package is found without being imported: its ``__init__`` needs dependencies we do not install.
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MOSES data not found: install it with `pip install --no-deps molsets==0.3.1` (make does this)"
        )
    path = Path(spec.submodule_search_locations[0]) / "dataset" / "data" / "train.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MOSES data not found at {path}")
    return path
