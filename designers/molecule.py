"""Molecules as relaxed one-hot SELFIES, scored by RDKit.

SELFIES (Krenn et al. 2020) makes every token string a valid molecule, so the gradient search can move freely in
the continuous box [0,1]^(L×V) and the arg-max token per position always decodes to a molecule. The vocabulary
(alphabet and maximum length) is fixed over all of MOSES (``designers/data/moses_selfies_vocabulary.json``), so
every surrogate shares one input shape.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from designers import chem
from designers.base import ConstraintReport, Designer, OracleResult
from designers.data import VOCABULARY_FILE, moses_train_csv

PAD = "[nop]"


@lru_cache(maxsize=1)
def _moses_smiles() -> tuple[str, ...]:
    return tuple(pd.read_csv(moses_train_csv())["SMILES"].tolist())


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[tuple[str, ...], int]:
    data = json.loads(VOCABULARY_FILE.read_text())
    return (PAD, *data["alphabet"]), int(data["max_length"])


class MoleculeDesigner(Designer):
    """Drug-like molecules from MOSES, optimised for an objective under a medicinal chemist's constraints.

    Args:
        objective: ``"plogp"`` (JT-VAE's penalized logP), ``"qed"``, a GuacaMol/PMO task by name
            (:mod:`designers.objectives.tasks`, ``pmo:<task>`` alike), or ``"module.path:function[@version]"``: a
            callable from a list of SMILES to one float per molecule, higher is better
            (:mod:`designers.objectives.user`).
        similarity_threshold: δ, the minimum Tanimoto similarity (Morgan r=2, 2048 bits) to the seed.
        max_sa: optional upper bound on the SA score (1 easy … 10 hard to synthesise).
        min_mol_weight, max_mol_weight: optional bounds on the molecular weight in Da.
        min_qed: optional lower bound on QED.
        keep_smarts: optional SMARTS every design must contain (a scaffold, a warhead).
        forbid_smarts: SMARTS no design may contain (reactive or toxic groups).
        workers: processes for the RDKit oracle and SELFIES encoding (default: all cores).

    Every constraint is checked by :meth:`constraints`, before any oracle call, and each violation is named.

    Example:
        >>> designer = MoleculeDesigner()
        >>> x = designer.encode(["CC(=O)Oc1ccccc1C(=O)O"])
        >>> designer.decode(x)
        ['CC(=O)Oc1ccccc1C(=O)O']
    """

    name = "molecule"
    #: Constraints and parallelism: none of them changes an oracle score, so none of them invalidates cached labels.
    settings_outside_oracle = ("similarity_threshold", "max_sa", "min_mol_weight", "max_mol_weight", "min_qed",
                               "keep_smarts", "forbid_smarts", "workers")

    def __init__(
        self,
        objective: str = "plogp",
        similarity_threshold: float = 0.4,
        max_sa: float | None = None,
        max_mol_weight: float | None = None,
        workers: int | None = None,
        min_mol_weight: float | None = None,
        min_qed: float | None = None,
        keep_smarts: str | None = None,
        forbid_smarts: Sequence[str] = (),
    ) -> None:
        from designers.objectives import ObjectiveError, normalise
        from designers.objectives.scoring import smarts_pattern

        try:
            objective = normalise(objective, "molecule", probe=False)
        except ObjectiveError as exc:
            raise ValueError(str(exc)) from None
        if not 0 <= similarity_threshold <= 1:
            raise ValueError(f"similarity_threshold must lie in [0, 1], got {similarity_threshold}")
        if min_mol_weight is not None and max_mol_weight is not None and min_mol_weight > max_mol_weight:
            raise ValueError(f"min_mol_weight {min_mol_weight} > max_mol_weight {max_mol_weight}")
        for smarts in ([keep_smarts] if keep_smarts else []) + list(forbid_smarts):
            smarts_pattern(smarts)  # ValueError naming an invalid SMARTS
        #: The objective's name; a user callable's carries its version (``module:function@version``), so the oracle
        #: labels' cache key (the designer's plain settings) tells objectives and their versions apart.
        self.objective = objective
        self.similarity_threshold = similarity_threshold
        self.max_sa = max_sa
        self.min_mol_weight = min_mol_weight
        self.max_mol_weight = max_mol_weight
        self.min_qed = min_qed
        self.keep_smarts = keep_smarts or None
        self.forbid_smarts = tuple(forbid_smarts)
        self.workers = workers
        self.alphabet, self.max_length = _vocabulary()
        self._token_index = {token: i for i, token in enumerate(self.alphabet)}
        self.input_shape = (self.max_length, len(self.alphabet))
        self.lower, self.upper = 0.0, 1.0
        self.oracle_calls = 0

    def _user_objective(self):
        """The loaded user callable (``None`` for a built-in objective); loaded again after unpickling."""
        from designers.objectives import is_user_objective
        from designers.objectives.user import load

        return load(self.objective) if is_user_objective(self.objective) else None

    # -- data -----------------------------------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` distinct MOSES molecules (canonical SMILES, as MOSES stores them)."""
        pool = _moses_smiles()
        if n > len(pool):
            raise ValueError(f"asked for {n} molecules; MOSES has {len(pool)}")
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]

    # -- representation -------------------------------------------------------------------------------------------
    def token_indices(self, smiles: Sequence[str]) -> tuple[torch.Tensor, list[str | None]]:
        """``(indices (n, L) int64, failures)``: rows whose molecule cannot be represented are all padding and
        their failure names the culprit (too long, unknown token, not SELFIES-encodable)."""
        indices = torch.zeros((len(smiles), self.max_length), dtype=torch.long)
        failures: list[str | None] = [None] * len(smiles)
        for row, (s, tokens) in enumerate(zip(smiles, chem.selfies_tokens(smiles, self.workers))):
            if isinstance(tokens, str):
                failures[row] = tokens
            elif len(tokens) > self.max_length:
                failures[row] = f"{s!r} has {len(tokens)} SELFIES tokens; the vocabulary allows {self.max_length}"
            elif unknown := [t for t in tokens if t not in self._token_index]:
                failures[row] = f"{s!r} uses SELFIES token {unknown[0]} outside the MOSES alphabet"
            else:
                indices[row, : len(tokens)] = torch.tensor([self._token_index[t] for t in tokens], dtype=torch.long)
        return indices, failures

    def one_hot(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(indices.long(), len(self.alphabet)).float()

    def encode(self, designs: Sequence[str]) -> torch.Tensor:
        """SMILES → one-hot ``(n, L, V)``; raises ``ValueError`` naming every molecule that cannot be encoded."""
        indices, failures = self.token_indices(designs)
        bad = [f for f in failures if f is not None]
        if bad:
            raise ValueError("; ".join(bad))
        return self.one_hot(indices)

    def discretize(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The vertex of the box a relaxed tensor decodes to: the one-hot of its arg-max tokens.

        Signed steps move every token with a same-signed gradient at the same rate, so several tokens of a
        position often tie at the box's edge. Ties go to ``reference`` (the seed's one-hot) when given: the
        search then changes a position only when some token truly overtakes the seed's, never by tie order.
        """
        if reference is not None:
            x = x + 1e-4 * reference
        return self.one_hot(x.argmax(dim=-1))

    def decode(self, x: torch.Tensor) -> list[str]:
        """Relaxed or one-hot ``(n, L, V)`` → canonical SMILES of the arg-max tokens (``""`` if nothing is left)."""
        return chem.decode_selfies(["".join(self.alphabet[i] for i in row) for row in x.argmax(dim=-1).tolist()],
                                   self.workers)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)

    def fingerprints(self, designs: Sequence[str]) -> torch.Tensor:
        """Features of the loop's exact rescoring (``rescorer="ridge"``): :func:`designers.chem.morgan_counts`."""
        return torch.from_numpy(chem.morgan_counts(designs))

    def graph_offspring(self, first: Sequence[str], second: Sequence[str | None], seed: int,
                        mutation_rate: float | None = None) -> list[str]:
        """Graph GA children of each pair (a mutant where ``second[i]`` is ``None``), ``""`` where none is valid:
        :func:`designers.graph_ga.offspring`."""
        from designers import graph_ga

        rate = graph_ga.MUTATION_RATE if mutation_rate is None else mutation_rate
        return graph_ga.offspring(first, second, seed, rate, self._rdkit_workers())

    def decorations(self, parents: Sequence[str], per_parent: int, seed: int) -> list[list[str]]:
        """Per parent, ``per_parent`` molecules one common substituent away
        (:func:`designers.decorations.decorations`)."""
        from designers import decorations

        return decorations.decorations(parents, per_parent, seed, self._rdkit_workers())

    def _rdkit_workers(self) -> int:
        return chem.default_workers() if self.workers is None else self.workers

    # -- oracle and constraints -----------------------------------------------------------------------------------
    def _oracle(self, designs: list[str]) -> OracleResult:
        user = self._user_objective()
        scores, failures, extras = chem.score_molecules(designs, "plogp" if user else self.objective, self.workers)
        if user is not None:
            # RDKit has already failed what is not a molecule; the user's callable sees canonical SMILES of the rest.
            from designers.objectives.user import score_smiles

            valid = [i for i, f in enumerate(failures) if f is None]
            scores = np.full(len(designs), np.nan)
            if valid:
                values, reasons = score_smiles(user, [chem.canonical_smiles(designs[i]) for i in valid])
                for j, i in enumerate(valid):
                    scores[i], failures[i] = values[j], reasons[j]
        return OracleResult(scores, failures, extras)

    def report(self, designs: Sequence[str]) -> dict[str, np.ndarray]:
        """Drug-likeness beside the objective (QED), not counted as oracle calls: it never steers the search."""
        return {"qed": chem.qed_scores(designs, self.workers)}

    @property
    def bound_to_seed(self) -> bool:
        return self.similarity_threshold > 0

    def constraints(self, designs: Sequence[str], seeds: Sequence[str]) -> ConstraintReport:
        """Similarity ≥ δ to the seed, SA ≤, molecular weight in range, QED ≥, the kept SMARTS present, no
        forbidden SMARTS: every violation of a design is named (``"; "``-joined); ``values`` holds the similarity
        and each bounded property, for the designs table. No oracle call is made or counted."""
        from rdkit import Chem

        from designers.objectives.scoring import smarts_pattern

        designs = list(designs)
        similarity = chem.tanimoto_similarity(designs, seeds)
        values: dict[str, np.ndarray] = {"similarity": similarity}
        if self.max_sa is not None or self.min_mol_weight is not None or self.max_mol_weight is not None:
            extras = chem.score_molecules(designs, "plogp", self.workers)[2]
            if self.max_sa is not None:
                values["sa"] = extras["sa"]
            if self.min_mol_weight is not None or self.max_mol_weight is not None:
                values["mol_weight"] = extras["mol_weight"]
        if self.min_qed is not None:
            values["qed"] = chem.qed_scores(designs, self.workers)
        violations: list[str | None] = []
        for i, design in enumerate(designs):
            if chem.canonical_smiles(design) is None:
                violations.append(f"invalid SMILES {design!r}")
                continue
            found = []
            if not similarity[i] >= self.similarity_threshold:
                found.append(f"similarity {similarity[i]:.3f} < {self.similarity_threshold}")
            if self.max_sa is not None and not values["sa"][i] <= self.max_sa:
                found.append(f"SA score {values['sa'][i]:.2f} > {self.max_sa}")
            if self.min_mol_weight is not None and not values["mol_weight"][i] >= self.min_mol_weight:
                found.append(f"molecular weight {values['mol_weight'][i]:.1f} < {self.min_mol_weight}")
            if self.max_mol_weight is not None and not values["mol_weight"][i] <= self.max_mol_weight:
                found.append(f"molecular weight {values['mol_weight'][i]:.1f} > {self.max_mol_weight}")
            if self.min_qed is not None and not values["qed"][i] >= self.min_qed:
                found.append(f"QED {values['qed'][i]:.3f} < {self.min_qed}")
            if self.keep_smarts or self.forbid_smarts:
                mol = Chem.MolFromSmiles(design)
                if self.keep_smarts and not mol.HasSubstructMatch(smarts_pattern(self.keep_smarts)):
                    found.append(f"lacks the kept substructure {self.keep_smarts}")
                found += [f"contains the forbidden substructure {smarts}" for smarts in self.forbid_smarts
                          if mol.HasSubstructMatch(smarts_pattern(smarts))]
            violations.append("; ".join(found) or None)
        return ConstraintReport(violations, values)

    # -- text and pictures ----------------------------------------------------------------------------------------
    def key(self, design: str) -> str:
        return chem.canonical_smiles(design) or ""

    def parse(self, text: str) -> str:
        smiles = chem.canonical_smiles(text.strip())
        if smiles is None:
            raise ValueError(f"invalid SMILES {text.strip()!r}")
        return smiles

    def legends(self, pairs: Sequence[tuple[str, str]], captions: Sequence[str] | None = None) -> list[str]:
        """Under each seed and design of :meth:`render`: the objective's name on the seed, the caption (the scores)
        and the Tanimoto similarity to the seed on the design, the number the similarity bound δ is checked on."""
        from designers.objectives import label

        similarity = chem.tanimoto_similarity([s for s, _ in pairs], [d for _, d in pairs])
        name = label(self.objective)
        out = []
        for i in range(len(pairs)):
            caption = captions[i] if captions else ""
            out += [f"seed {i} ({name})", f"design {i}{': ' + caption if caption else ''}, similarity {similarity[i]:.2f}"]
        return out

    def render(self, pairs: Sequence[tuple[str, str]], path: str, captions: Sequence[str] | None = None) -> None:
        """Seeds and designs side by side, what each edit changed highlighted: in the seed the atoms and bonds it
        removed or altered, in the design those it added (outside their maximum common substructure)."""
        from rdkit import Chem
        from rdkit.Chem import Draw

        mols, atoms, bonds = [], [], []
        for seed, design in pairs:
            mols += [Chem.MolFromSmiles(seed), Chem.MolFromSmiles(design)]
            for changed_atoms, changed_bonds in chem.changed_parts(seed, design):
                atoms.append(changed_atoms)
                bonds.append(changed_bonds)
        image = Draw.MolsToGridImage(mols, molsPerRow=2, subImgSize=(300, 240), legends=self.legends(pairs, captions),
                                     highlightAtomLists=atoms, highlightBondLists=bonds)
        image.save(path)
