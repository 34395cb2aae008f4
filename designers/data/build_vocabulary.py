"""Regenerate ``moses_selfies_vocabulary.json``: the SELFIES alphabet and maximum length over all of MOSES.

    python -m designers.data.build_vocabulary            # ~7 minutes on 2 cores

Fixing the vocabulary over the whole dataset (rather than per training sample) keeps every surrogate's input
shape identical across runs, so models, caches and designs stay comparable.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import selfies as sf

from designers.data import VOCABULARY_FILE, moses_train_csv


def _tokens(smiles_chunk: list[str]) -> tuple[Counter, int]:
    counts: Counter = Counter()
    longest = 0
    for smiles in smiles_chunk:
        tokens = list(sf.split_selfies(sf.encoder(smiles)))
        counts.update(tokens)
        longest = max(longest, len(tokens))
    return counts, longest


def main() -> None:
    start = time.perf_counter()
    smiles = pd.read_csv(moses_train_csv())["SMILES"].tolist()
    chunks = [smiles[i : i + 20_000] for i in range(0, len(smiles), 20_000)]
    counts: Counter = Counter()
    longest = 0
    with ProcessPoolExecutor() as pool:
        for chunk_counts, chunk_longest in pool.map(_tokens, chunks):
            counts.update(chunk_counts)
            longest = max(longest, chunk_longest)
    vocabulary = {
        "source": "MOSES train split (molsets 0.3.1, MIT licence), all molecules",
        "n_molecules": len(smiles),
        "max_length": longest,
        "alphabet": sorted(counts),
        "token_counts": dict(sorted(counts.items())),
    }
    VOCABULARY_FILE.write_text(json.dumps(vocabulary, indent=1) + "\n")
    print(json.dumps({"tokens": len(counts), "max_length": longest, "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
