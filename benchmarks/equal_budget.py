"""Gradient search on a surrogate vs black-box search on the oracle, at equal oracle budgets on the same seeds.

Prints one JSON object. Every method gets the same labelled data (the gradient methods train on it; the
baselines ignore it: their labelling is not charged to them, nor to the campaign), the same seeds (the
lowest-scoring of the held-out pool), the same constraints (similarity δ to the seed) and the same budget of
oracle calls for verifying or scoring designs:

* ``gradient/<defense>``: the campaign's stages (train a surrogate with the defense, L2 gradient search from
  every seed, the oracle verifies the top candidates). ``top_k`` is set to ⌈budget / seeds⌉ so the gradient
  search may spend the whole budget; it spends less when its trajectories meet fewer feasible designs.
* ``tpe``: Optuna TPE (Bergstra et al. 2011) over SELFIES token edits of each seed, one trial per proposal.
* ``random``: random SELFIES token edits of each seed.

Compared per method: ``success_rate``, ``oracle_improvement_mean`` (the campaign's definitions), the oracle calls
actually spent, the designs' mean QED, and for the baselines the improvement after 100/300/1000 calls per seed
where the budget allows. Small defaults (a few minutes on 2 cores); the MLflow store is a throw-away one unless
``--tracking-uri`` is given.

    python benchmarks/equal_budget.py [--n-labelled 3000] [--n-seeds 20] [--budget 400] [--epochs 10]
                                      [--defenses none,fgsm,vat] [--methods tpe,random] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import advdesign.environment  # noqa: E402,F401  (embedded Prefect/MLflow defaults first)

COMPARED = ("n_seeds", "success_rate", "oracle_improvement_mean", "oracle_improvement_std", "oracle_calls",
            "constraint_satisfied_fraction", "designs_qed_mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-labelled", type=int, default=3_000)
    parser.add_argument("--n-unlabelled", type=int, default=2_000)
    parser.add_argument("--n-pool", type=int, default=600)
    parser.add_argument("--n-seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=400, help="oracle calls per method, all seeds together")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100, help="gradient-search steps")
    parser.add_argument("--defenses", default="none,fgsm,vat")
    parser.add_argument("--methods", default="tpe,random")
    parser.add_argument("--max-edits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: a throw-away one)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from flows.baselines import BaselineParameters, baselines
    from flows.campaign import campaign
    from flows.parameters import CampaignParameters, DataParameters, SearchParameters, SurrogateParameters

    tracking_uri = args.tracking_uri or f"sqlite:///{tempfile.mkdtemp(prefix='equal-budget-')}/mlflow.db"
    data = DataParameters(n_labelled=args.n_labelled, n_unlabelled=args.n_unlabelled, n_seed_pool=args.n_pool,
                          n_seeds=args.n_seeds, oracle_batch_size=1_000, rng_seed=args.seed)
    top_k = max(1, math.ceil(args.budget / args.n_seeds))
    out: dict = {"budget": args.budget, "n_seeds": args.n_seeds, "torch_threads": args.threads,
                 "load_average": os.getloadavg()[0], "settings": vars(args), "methods": {}}

    defenses = tuple(d.strip() for d in args.defenses.split(",") if d.strip())
    if defenses:
        started = time.perf_counter()
        summary = campaign(CampaignParameters(
            data=data, surrogate=SurrogateParameters(epochs=args.epochs),
            search=SearchParameters(steps=args.steps, top_k=top_k, budget=args.budget),
            defenses=defenses, tracking_uri=tracking_uri, experiment="equal-budget"))
        out["gradient_wall_seconds"] = round(time.perf_counter() - started, 1)
        out["gradient_parent_run_id"] = summary["mlflow"]["parent_run_id"]
        for defense, result in summary["defenses"].items():
            row = {k: result.get(k) for k in (*COMPARED, "transfer_rate", "improvement_gap", "validation_r2")}
            out["methods"][f"gradient/{defense}"] = result if "error" in result else row

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if methods:
        started = time.perf_counter()
        summary = baselines(BaselineParameters(
            data=data, methods=methods, budget=args.budget, max_edits=args.max_edits, seed=args.seed,
            tracking_uri=tracking_uri, experiment="equal-budget"))
        out["baselines_wall_seconds"] = round(time.perf_counter() - started, 1)
        out["baselines_parent_run_id"] = summary["mlflow"]["parent_run_id"]
        for method, result in summary["methods"].items():
            at = {k: v for k, v in result.items() if k.startswith(("improvement_at_", "best_score_at_"))}
            out["methods"][method] = {**{k: result.get(k) for k in COMPARED}, **at,
                                      "wall_seconds": result["wall_seconds"]}
    out["tracking_uri"] = tracking_uri
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
