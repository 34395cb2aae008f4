"""The JT-VAE constrained-optimisation numbers of ``campaign_metrics`` on a hand-made table.

Success (strict): a verified design above the seed's true score; feasible: any verified design; the
improvement mean ± std is taken over the successful seeds only, population std.
"""

import numpy as np
import pandas as pd

from tasks.candidates import campaign_metrics

SEED_SCORES = np.array([-2.0, -3.0, 0.0, 1.0, -1.0])


def verified_designs() -> pd.DataFrame:
    """Seed 0: two designs, best −0.5 (gain +1.5, success). Seed 1: one design below the seed (feasible, no
    success). Seed 2: best 2.5 (gain +2.5, success). Seed 3: its only design failed on the oracle. Seed 4: none."""
    return pd.DataFrame({
        "seed_index": [0, 0, 1, 2, 2, 3],
        "predicted": [0.0, 1.0, 0.0, 3.0, 2.0, 5.0],
        "true_score": [-1.0, -0.5, -3.5, 2.5, 1.0, np.nan],
        "oracle_failure": [None, None, None, None, None, "invalid SMILES"],
    })


def metrics(verified: pd.DataFrame) -> dict:
    return campaign_metrics(verified, SEED_SCORES, np.zeros(len(SEED_SCORES)), constraint_satisfied_fraction=0.5)


def test_success_counts_only_seeds_with_a_design_above_them():
    m = metrics(verified_designs())
    assert m["success_rate"] == 2 / 5  # seeds 0 and 2
    assert m["feasible_design_rate"] == 3 / 5  # seeds 0, 1 and 2; seed 3's design failed on the oracle


def test_improvement_over_successful_seeds_only_with_population_std():
    m = metrics(verified_designs())
    assert m["successful_improvement_mean"] == 2.0  # mean of +1.5 and +2.5
    assert m["successful_improvement_std"] == 0.5  # ddof = 0 (ddof = 1 would give 0.707)
    # over all seeds, failures included: (1.5 − 0.5 + 2.5 + 0 + 0) / 5
    assert m["oracle_improvement_mean"] == 0.7


def test_a_design_tying_its_seed_is_feasible_but_not_a_success():
    tie = pd.DataFrame({"seed_index": [1], "predicted": [1.0], "true_score": [-3.0], "oracle_failure": [None]})
    m = metrics(tie)
    assert m["feasible_design_rate"] == 1 / 5
    assert m["success_rate"] == 0.0
    assert m["successful_improvement_mean"] == 0.0 and m["successful_improvement_std"] == 0.0


def test_no_verified_design_gives_zeros():
    empty = verified_designs().iloc[:0]
    m = metrics(empty)
    assert (m["success_rate"], m["feasible_design_rate"]) == (0.0, 0.0)
    assert (m["successful_improvement_mean"], m["successful_improvement_std"]) == (0.0, 0.0)
