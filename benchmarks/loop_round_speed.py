"""Speed of one design-loop round on molecules: proposals and exact scoring for S seeds × K candidates, and the
round's parts beside the oracle's own cost.

Times, best of ``--repeats``, on one process:
* ``proposals_and_exact_scoring_seconds`` — the gradient of the ensemble at every incumbent, HotFlip scores of
  every edit, the Gumbel-top-k draw, the multi-edit combinations and the exact forward pass of every member on
  every candidate (:meth:`DesignLoop._token_candidates`); the issue's target is ≤ 2 s for 800 × 512 on 2 cores;
  ``bfloat16`` the same with the hidden layers in bfloat16 (``scoring_precision``), beside how far its predictions
  are from float32's on the same candidates and the share of each seed's q picks they leave unchanged;
* ``screening_seconds`` — the rest of a whole :meth:`DesignLoop.ask`: decoding the best candidates (in the RDKit
  worker pool), constraint checks (similarity) and the hand-over, for the ranked and the unranked picks;
* ``finetune_seconds`` — one round's fine-tuning of every member (S × q new designs beside the replayed ones);
* ``oracle_seconds_per_round`` — the true oracle on a round's batch (S × q designs), to read the loop's own share
  of a round against (target: ≤ 10 % of a round); ``oracle_ms_per_call_for_target_share`` — what an oracle call
  would have to cost for the loop's own time to be that share (docking costs seconds a molecule).

    python benchmarks/loop_round_speed.py [--seeds 800] [--candidates 512] [--members 4] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The issue's target for the loop's own share of a round (its time outside oracle calls).
TARGET_SHARE = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=800)
    parser.add_argument("--candidates", type=int, default=512, help="proposals per seed (one incumbent each), "
                        "the gradient's and the random ones together")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch-per-seed", type=int, default=5)
    parser.add_argument("--n-labelled", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    import numpy as np
    import torch

    from designers import make_designer
    from tasks.ensemble import fine_tune, train_ensemble
    from tasks.search.base import SearchState
    from tasks.search.design_loop import DesignLoop, LoopConfig
    from tasks.training import Defense, TrainingConfig

    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    designer = make_designer("molecule")
    data = designer.sample(args.n_labelled, np.random.default_rng(0))
    labels = designer.oracle(data)
    ok = [i for i, f in enumerate(labels.failures) if f is None]
    x = designer.encode([data[i] for i in ok])
    y = torch.tensor(labels.scores[ok], dtype=torch.float32)
    config = TrainingConfig(epochs=2, batch_size=128, defense=Defense("none"))
    ensemble, _ = train_ensemble(designer.input_shape, (256, 128), config, args.members, x, y, x[:0], y[:0])
    seeds = designer.sample(args.seeds, np.random.default_rng(1))
    oracle_started = time.perf_counter()
    seed_scores = designer.oracle(seeds).scores
    oracle_seconds = (time.perf_counter() - oracle_started) * args.batch_per_seed  # a round sends S × q designs
    # `candidates` per seed in all: the gradient's edits plus the random share beside them.
    per_incumbent = round(args.candidates / (1 + LoopConfig.random_share))
    loop = DesignLoop(ensemble, config, x, y, LoopConfig(proposals_per_incumbent=per_incumbent, population=1,
                                                         batch_per_seed=args.batch_per_seed, finetune_epochs=1))
    state = SearchState(designer, seeds, seed_scores, 100)
    owner = torch.arange(args.seeds)

    def best_of(run, repeats=args.repeats):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - started)
        return min(times), out

    proposal_seconds, (candidates, seed_of, _, _, _) = best_of(
        lambda: loop._token_candidates(designer, seeds, owner))
    fast_loop = DesignLoop(ensemble, config, x, y, replace(loop.config, scoring_precision="bfloat16"))
    bfloat16_seconds, _ = best_of(lambda: fast_loop._token_candidates(designer, seeds, owner))
    # What bfloat16 changes: the same candidates scored both ways, and each seed's top q picks by either.
    vocabulary = len(designer.alphabet)
    exact = ensemble.predict_tokens(candidates, vocabulary).mean(dim=0)
    fast = ensemble.predict_tokens(candidates, vocabulary, precision=torch.bfloat16).mean(dim=0)
    same_picks = (_top_per_seed(exact, seed_of, args.batch_per_seed)
                  & _top_per_seed(fast, seed_of, args.batch_per_seed)).sum() / (args.seeds * args.batch_per_seed)
    # A whole ask once (a second would find its decodes cached and its rejects remembered): its proposals as
    # above, then the screening, both passes of it when the unranked share is on.
    ask_seconds, _ = best_of(lambda: loop.ask(state), 1)
    screening_seconds = max(ask_seconds - proposal_seconds, 0.0)
    # A round fine-tunes on its S × q new designs beside `replay` old points, for `finetune_epochs` epochs.
    rows = min(len(x), LoopConfig.replay + args.seeds * args.batch_per_seed)
    finetune_seconds, _ = best_of(lambda: fine_tune(ensemble, config, LoopConfig.finetune_epochs, x[:rows], y[:rows]))
    loop_seconds = proposal_seconds + screening_seconds + finetune_seconds
    calls_per_round = args.seeds * args.batch_per_seed
    result = {
        "seeds": args.seeds, "candidates_per_seed": args.candidates, "members": args.members,
        "candidates_scored": int(len(candidates)), "threads": args.threads, "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg()[0],
        "proposals_and_exact_scoring_seconds": round(proposal_seconds, 3),
        "bfloat16": {"proposals_and_exact_scoring_seconds": round(bfloat16_seconds, 3),
                     "max_abs_difference": float((fast - exact).abs().max()),
                     "mean_abs_difference": float((fast - exact).abs().mean()),
                     "prediction_std": float(exact.std()), "same_picks": float(same_picks)},
        "screening_seconds": round(screening_seconds, 3), "finetune_seconds": round(finetune_seconds, 3),
        "oracle_seconds_per_round": round(oracle_seconds, 3),
        "batch_per_seed": args.batch_per_seed,
        "loop_share_of_round": round(loop_seconds / (loop_seconds + oracle_seconds), 3),
        # The same round against a costlier oracle: the loop's own time per call it sends, and the cost a call
        # must have for that time to be the target's share of a round (share = loop / (loop + oracle)).
        "loop_ms_per_oracle_call": round(1000 * loop_seconds / calls_per_round, 3),
        "oracle_ms_per_call": round(1000 * oracle_seconds / calls_per_round, 3),
        "oracle_ms_per_call_for_target_share": round(1000 * loop_seconds / calls_per_round * (1 - TARGET_SHARE)
                                                     / TARGET_SHARE, 1),
        "targets": {"proposals_and_exact_scoring_seconds": 2.0, "loop_share_of_round": TARGET_SHARE},
    }
    text = json.dumps(result, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            handle.write(text + "\n")
    print(text)


def _top_per_seed(values, seed_of, q):
    """Whether each candidate is among its seed's ``q`` highest ``values``."""
    import torch

    from tasks.search.design_loop import seed_ranking

    order, rank = seed_ranking(values, seed_of)
    top = torch.zeros(len(values), dtype=torch.bool)
    top[order[rank < q]] = True
    return top


if __name__ == "__main__":
    main()
