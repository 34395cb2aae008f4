"""Equal-budget comparison curves: best true score found after C oracle calls, gradient search vs black-box search.

For each repeat r (``--repeats``, default 3) and each method, the anytime curve of every starting design: the best
true score known after C oracle calls spent on that design (the design itself counting as known), read at the
checkpoints C (molecules 100, 300, 1000; cars see below), and the improvement over the starting design's score.
Prints one JSON object per domain with, per method and C, the mean ± std over repeats of the mean over starting
designs, the raw per-repeat values, the oracle calls actually spent, wall times and the load average; logs the same
to MLflow (through :class:`tasks.tracking.Tracker`; a throw-away SQLite store unless ``--tracking-uri``).

**C counts per starting design.** Every method searches each starting design (the lowest-scoring designs of the
held-out pool, the campaign's JT-VAE protocol: ``--n-seeds``) on its own, with the same constraints (molecules:
Tanimoto similarity δ = 0.4 to the start; cars: the feasibility rules) and the same de-duplication: a design is
scored at most once per start, the start itself and constraint violations cost no call. C = 1000 therefore means
``1000 · n_seeds`` oracle calls per method and repeat.

Methods:

* ``gradient/<defense>`` (none, fgsm, vat): the campaign's surrogate (same data, architecture and training;
  training seed r) and L2 gradient search, with ``--restarts`` start points per design (PGD's random start,
  Madry et al. 2018, :func:`tasks.search.random_starts`: the first is the design itself, the others uniform in
  an L∞ ball of ``--restart-radius`` on a ``--restart-fraction`` of the positions; on molecules radius 1 on ~4 %
  of the positions, i.e. random neighbours one or two token edits away), all in one batched tensor. Every distinct
  constraint-satisfying design met on any trajectory is a candidate; candidates are ranked by the surrogate's
  prediction and verified in that order, so the k-th verified design is the k-th oracle call
  (:class:`tasks.search.one_shot.OneShotGradient`, run by the same budgeted driver as the others). When the
  trajectories meet fewer candidates than the largest C, the calls actually spent are reported
  (``calls_per_seed``) and the curve stays flat after them.
* the black boxes, each a registered searcher (:mod:`tasks.search.registry`) run by the one budgeted driver
  (:func:`tasks.search.black_box.run_black_box` → :func:`tasks.search.driver.run_search`: every start in one oracle
  call per round, the start's budget a hard cap), searcher seed r: ``hill-climber``: STONED-style population
  mutation of the start's SELFIES tokens (Nigam et al. 2021; molecules); ``tpe``: Optuna's TPE (Bergstra et al.
  2011, *Algorithms for Hyper-Parameter Optimization*) over SELFIES token edits of the start (molecules);
  ``random``: random token edits (molecules) or Gaussian perturbations of the start's box encoding, σ = 0.1 (cars);
  ``cmaes``: (μ/μ_w, λ)-CMA-ES (Hansen 2016, *The CMA Evolution Strategy: A Tutorial*) on the box encoding (cars).
* ``loop/<defense>`` (``--loop none,fgsm,…``; none by default): the design loop
  (:class:`tasks.search.design_loop.DesignLoop`: an ensemble of ``search.ensemble_size`` surrogates with the
  defense, training seed r, gradient-ranked edits verified and fine-tuned on round after round) run by the same
  driver under the same per-start budget; like gradient search it is charged the labelling with
  ``--charge-labelling``.

**Labelling is not charged to the per-design budget** by default: the surrogate's training labels
(``labelling_calls``, reported beside the curves) are a one-off cost shared by every start. ``--charge-labelling``
charges them, amortised: each start's gradient curve is read ``⌈labelling_calls / n_seeds⌉`` calls later (a
checkpoint the amortised share does not reach shows the start's own score). The seed pool's labels choose the
starts for every method and are charged to none.

Repeats vary the methods' randomness (training seed and restart noise, TPE/random/CMA-ES seeds); the labelled data
and the starting designs are the same in every repeat (``--data-seed``), so the std is over search and training
randomness, not over data.

Sizes. ``--domain molecule`` (the default, what ``make bench`` runs): the quick campaign's data (3,000 labelled),
10 starts, C = 100, 300, 1000 (TPE capped at 100, see ``DOMAIN_DEFAULTS``). ``--domain car``: a blueprint costs
~1 s on the coarse lattice, so the car defaults are 2 starts and C = 10, 30, 50 (1,500 blueprints in all); C = 300
and 1000 do not fit on a 2-core CPU. On one H200 the command below measured C = 100, 300, 1000 (2 starts, 3
repeats, 32 restarts so that gradient search meets ≥ 1,000 candidates per start; 30,256 blueprints in 102 oracle
calls, 235 s: ``benchmarks/results/equal_budget_car_gpu.json``). The results JSON records the wall time and load average it was measured at.
``--resolution smoke`` is for plumbing checks only (its ranking is not validated; the JSON says so). With
``--output-dir`` the JSON is rewritten after every method and repeat (``"complete": false`` until the end), so a
long car run that is stopped keeps what it measured.

**On a GPU machine without Prefect or MLflow** (a bare machine with torch, numpy, scipy, pandas and pydantic):
``--no-orchestration`` labels by calling ``designer.oracle`` directly (no Prefect tasks, no cache), trains with the
pure-torch trainer the campaign's task wraps (:func:`tasks.pure_stages.train_surrogate`) and logs nothing to MLflow
(the JSON says ``"orchestration": "none"``); the data, seeds, surrogates and curves are the same functions'.
``--device cuda`` runs the car's flow oracle on the GPU, ``--max-batch`` blueprints per simulated chunk (the
surrogates are trained and searched on the CPU: 12 inputs, a few hundred points). A GPU oracle costs per call,
not per blueprint (the coarse lattice is launch-bound: a chunk of 1 or 256 takes about the same time), so
``--lockstep`` runs each black-box baseline's repeats together too (the driver already runs every start of a
search together): one driver run for all repeats, one oracle call per round — a CMA-ES generation, a batch of
random proposals — for all of them (:func:`tasks.search.black_box.run_black_box_repeats`, which gives the driver
one searcher per repeat): the same designs and scores as repeat after repeat, in far fewer calls. The JSON records
the device, torch version, the oracle calls' count and time. The design loop cannot batch that way (a round sends
``batch_per_seed`` designs a start, then fine-tunes), so on a many-core machine each loop runs as its own process:
``--repeat-ids r`` measures repeat r alone, ``--resume-dir`` keeps the labels and each loop's state after every
round (the same command started again, on this machine or another, labels nothing and goes on from there), and
``--merge a.json b.json …`` joins the runs' JSONs into one (docs/car-oracle.md shows the commands)::

    python benchmarks/equal_budget.py --domain car --device cuda --max-batch 1024 --no-orchestration --lockstep \
        --checkpoints 100,300,1000 --restarts 32 --baselines random,cmaes --output-dir "$OUT"

    python benchmarks/equal_budget.py [--domain molecule|car] [--repeats 3] [--n-seeds N] [--checkpoints 100,300,1000]
        [--restarts N] [--restart-radius R] [--restart-fraction F] [--defenses none,fgsm,vat]
        [--baselines tpe,random] [--loop none,vat] [--max-calls tpe=100] [--charge-labelling]
        [--output-dir benchmarks/results]
        [--no-plot] [--tracking-uri URI] [--device cpu|cuda] [--max-batch N] [--no-orchestration] [--lockstep]
        [--eps E] [--repeat-ids 0,1] [--resume-dir DIR]
    python benchmarks/equal_budget.py --merge RUN.json … --output-dir DIR --name NAME
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import advdesign.environment  # noqa: E402,F401  (embedded Prefect/MLflow defaults first)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Per domain: starts, checkpoints (calls per start), restarts and their radius, and the black-box baselines.
#: Data, surrogate and search settings are the quick campaign's (flows.parameters.QUICK) unless overridden.
DOMAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    # One-hot molecules: each restart starts from a random token edit of the start (radius 1 on ~4 % of the
    # positions, about 1–2 tokens). One trajectory meets only ~10 distinct molecules within δ = 0.4 before the
    # search leaves the similarity region, and restarts add candidates sublinearly: measured on the `none`
    # surrogate, 64 seed-preserving restarts (radius 0.45) gave 22 candidates per start, 64 edit restarts 26,
    # 256 edit restarts × 30 steps 83 (min 57, ~50 s for 10 starts). 1000 per start would take thousands of
    # restarts, so gradient search spends fewer calls than the largest C (its curve is flat after them).
    # TPE is capped at 100 calls per start: Optuna's TPE costs O(trials) per proposal and needs ~5 trials per
    # scored molecule (infeasible and repeated proposals are trials too): 300 calls took 170 s per start, 1000
    # would take tens of minutes per start on a loaded 2-core machine. The hill-climber (STONED) is the black box
    # to beat (issue 10).
    "molecule": {"n_seeds": 10, "checkpoints": (100, 300, 1000), "restarts": 256, "restart_radius": 1.0,
                 "restart_fraction": 0.04, "steps": 30, "baselines": ("tpe", "random", "hill-climber"),
                 "max_calls": {"tpe": 100}},
    # Cars: every step is a new blueprint, so a few restarts give plenty of candidates; radius 0.1 = CMA-ES's σ₀.
    # 2 starts and C ≤ 50: 5 methods × 2 × 50 × 3 repeats = 1,500 blueprints at ~1 s each on the coarse lattice.
    "car": {"n_seeds": 2, "checkpoints": (10, 30, 50), "restarts": 8, "restart_radius": 0.1,
            "restart_fraction": 1.0, "steps": None, "baselines": ("cmaes", "random"), "max_calls": {}},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=sorted(DOMAIN_DEFAULTS), default="molecule")
    parser.add_argument("--repeats", type=int, default=3, help="random seeds r = 0 … repeats−1")
    parser.add_argument("--n-seeds", type=int, help="starting designs (lowest-scoring of the pool)")
    parser.add_argument("--checkpoints", help="oracle calls per starting design, comma-separated")
    parser.add_argument("--restarts", type=int, help="gradient-search start points per starting design")
    parser.add_argument("--restart-radius", type=float, help="L∞ radius of the random starts")
    parser.add_argument("--restart-fraction", type=float, help="fraction of positions a random start perturbs")
    parser.add_argument("--max-calls", help="per-method caps on calls per start, e.g. tpe=100 (default: the "
                        "domain's; 'none' for no cap); a capped method's curve stops there (null beyond)")
    parser.add_argument("--defenses", default="none,fgsm,vat", help="surrogates for gradient search ('' for none)")
    parser.add_argument("--baselines", help="black-box methods (molecule: tpe,random,hill-climber; car: "
                        "cmaes,random)")
    parser.add_argument("--loop", default="", help="defenses to run the design loop with (method loop/<defense>; "
                        "'' for none)")
    parser.add_argument("--n-labelled", type=int, help="surrogate training labels (default: the quick campaign's)")
    parser.add_argument("--n-unlabelled", type=int, help="unlabelled designs for VAT (default: the quick campaign's; "
                        "another number draws other data, seeds included, so compare methods run together)")
    parser.add_argument("--epochs", type=int, help="surrogate epochs (default: the quick campaign's)")
    parser.add_argument("--eps", type=float, help="L∞ radius of FGSM/PGD adversarial training (default: the "
                        "campaign's)")
    parser.add_argument("--steps", type=int, help="gradient steps (default: the quick campaign's)")
    parser.add_argument("--max-edits", type=int, help="molecule baselines: token edits per proposal (default: each "
                        "method's own: hill-climber 2, random and tpe 3)")
    parser.add_argument("--resolution", default="coarse", help="car lattice (coarse, fine, finest; not smoke)")
    parser.add_argument("--charge-labelling", action="store_true",
                        help="charge the surrogate's labels to the gradient curves, amortised over the starts")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--output-dir", help="write <name>.json (and .png) here")
    parser.add_argument("--name", help="the files' name (default: equal_budget_<domain>)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--tracking-uri", help="MLflow store (default: a throw-away one)")
    parser.add_argument("--device", help="car: where the flow oracle runs (cpu, cuda; default: cuda if available)")
    parser.add_argument("--max-batch", type=int, help="car: blueprints simulated together (default: the "
                        "designer's, 32; on a GPU take ~1024)")
    parser.add_argument("--no-orchestration", action="store_true",
                        help="no Prefect, no MLflow: label with designer.oracle, train with the pure trainer")
    parser.add_argument("--lockstep", action="store_true", help="run each black-box baseline's repeats together, "
                        "one oracle call per round for all starts and repeats (same results, fewer calls)")
    parser.add_argument("--resume-dir", help="save each design loop's state here after every round; the same "
                        "command started again goes on from the last round of a loop that was stopped")
    parser.add_argument("--repeat-ids", help="measure only these repeats of 0 … repeats−1 (comma-separated), e.g. "
                        "one process per repeat on a many-core machine, joined afterwards with --merge")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join the JSONs of runs that each measured some "
                        "repeats (--repeat-ids) of the same benchmark into --output-dir/--name .json; runs nothing")
    args = parser.parse_args(argv)
    if args.merge:
        if not args.output_dir or not args.name:
            parser.error("--merge needs --output-dir and --name")
        return args
    defaults = DOMAIN_DEFAULTS[args.domain]
    args.n_seeds = args.n_seeds or defaults["n_seeds"]
    args.checkpoints = tuple(sorted(int(c) for c in args.checkpoints.split(","))) if args.checkpoints \
        else defaults["checkpoints"]
    args.restarts = args.restarts or defaults["restarts"]
    args.restart_radius = defaults["restart_radius"] if args.restart_radius is None else args.restart_radius
    args.restart_fraction = defaults["restart_fraction"] if args.restart_fraction is None else args.restart_fraction
    args.steps = args.steps or defaults["steps"]
    if args.max_calls is None:
        args.max_calls = dict(defaults["max_calls"])
    else:
        pairs = [p.split("=") for p in args.max_calls.split(",") if p.strip() and p.strip() != "none"]
        args.max_calls = {name.strip(): int(value) for name, value in pairs}
    args.defenses = tuple(d.strip() for d in args.defenses.split(",") if d.strip())
    args.loop = tuple(d.strip() for d in args.loop.split(",") if d.strip())
    args.name = args.name or f"equal_budget_{args.domain}"
    args.baselines = tuple(m.strip() for m in args.baselines.split(",") if m.strip()) if args.baselines is not None \
        else defaults["baselines"]
    if args.repeats < 1 or args.n_seeds < 1 or min(args.checkpoints) < 1:
        parser.error("--repeats, --n-seeds and every checkpoint must be ≥ 1")
    try:
        args.repeat_ids = tuple(sorted({int(r) for r in args.repeat_ids.split(",")})) if args.repeat_ids \
            else tuple(range(args.repeats))
    except ValueError:
        parser.error(f"--repeat-ids: {args.repeat_ids!r} is not a comma-separated list of integers")
    if not all(0 <= r < args.repeats for r in args.repeat_ids):
        parser.error(f"--repeat-ids: {args.repeat_ids} must lie in 0 … {args.repeats - 1} (--repeats {args.repeats})")
    if args.domain != "car" and (args.device or args.max_batch):
        parser.error("--device and --max-batch are car options")
    return args


def campaign_parameters(args: argparse.Namespace):
    """The quick campaign's data, surrogate and search settings for the domain, with this run's overrides."""
    from flows.parameters import CampaignParameters, DesignerParameters

    base = CampaignParameters.quick(args.domain)
    designer = DesignerParameters(name=args.domain, **({"resolution": args.resolution} if args.domain == "car" else {}))
    data = base.data.model_copy(update={"n_seeds": args.n_seeds, "rng_seed": args.data_seed,
                                        **{k: v for k, v in (("n_labelled", args.n_labelled),
                                                             ("n_unlabelled", args.n_unlabelled)) if v}})
    surrogate = base.surrogate.model_copy(update={k: v for k, v in (("epochs", args.epochs), ("eps", args.eps))
                                                  if v is not None})
    search = base.search.model_copy(update={"steps": args.steps} if args.steps else {})
    return designer, data, surrogate, search


#: No verified design (a method whose budget the charged labelling used up).
EMPTY = pd.DataFrame(columns=["seed_index", "call", "true_score", "oracle_failure"])


# -- gradient search as an anytime method -------------------------------------------------------------------------
def run_gradient(designer, model, seeds, search, restarts: int, radius: float, seed: int, fraction: float,
                 calls_per_seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Gradient search from every start under ``calls_per_seed``: :class:`tasks.search.one_shot.OneShotGradient`
    (one batched search over every start and restart, the distinct constraint-satisfying designs ranked by the
    surrogate) in the one budgeted driver, all of a start's calls in one round (one oracle call for every start, as
    the design is verified in the surrogate's order whatever the batch). Returns the verified designs (column
    ``call``: the k-th call verifies the k-th best candidate) and the candidates each start's trajectories met."""
    from tasks.search.driver import run_search
    from tasks.search.one_shot import OneShotGradient, search_config

    searcher = OneShotGradient(model, search_config(search), restarts=restarts, radius=radius, fraction=fraction,
                               batch_per_seed=max(calls_per_seed, 1), seed=seed)
    if calls_per_seed > 0:
        verified = run_search(searcher, designer, seeds.designs, seeds.scores, calls_per_seed).table
    else:  # the charged labelling used the budget up: the candidates are still counted
        searcher.rank(designer, seeds.designs)
        verified = EMPTY
    return verified, searcher.candidates_per_seed(len(seeds.designs))


def run_loop(designer, data, seeds, surrogate, search, defense: str, repeat: int, calls_per_seed: int,
             resume_dir: Path | None = None) -> tuple[pd.DataFrame, float]:
    """The design loop from every start under ``calls_per_seed`` (the campaign's loop, without its MLflow logging):
    an ensemble trained with ``defense`` and training seed ``repeat`` (:func:`tasks.ensemble.train_ensemble`),
    searched by :class:`tasks.search.design_loop.DesignLoop` in the one budgeted driver. With ``resume_dir`` the
    loop's state is saved there after every round, and a run stopped midway and started again with the same
    settings goes on from its last round (the campaign's checkpoints). Returns the verified designs and the
    ensemble mean's validation R²."""
    from tasks.ensemble import train_ensemble
    from tasks.pure_stages import data_fingerprint, regression_metrics, training_config
    from tasks.search.design_loop import DesignLoop, LoopConfig
    from tasks.search.driver import SearchCheckpoint, run_search

    config = training_config(surrogate, defense, repeat)
    x_unlabelled = data.x_unlabelled if defense == "vat" else None
    ensemble, _ = train_ensemble(tuple(designer.input_shape), tuple(surrogate.hidden), config, search.ensemble_size,
                                 data.x_train, data.y_train, data.x_val, data.y_val, x_unlabelled, designer.lower,
                                 designer.upper)
    loop = LoopConfig.from_parameters(search, seed=repeat)
    searcher = DesignLoop(ensemble, config, data.x_train, data.y_train, loop, x_unlabelled, designer.lower,
                          designer.upper)
    r2 = regression_metrics(lambda x: ensemble(x).mean(dim=0), data.x_val, data.y_val)["validation_r2"]
    checkpoint = None
    if resume_dir is not None:
        # The labels' exact bytes: a restart reads them back from the same folder (pure_stages.StoredLabels).
        fingerprint = data_fingerprint(designer.name, data.data_id, defense, repeat, calls_per_seed,
                                       config.as_params(), surrogate.hidden, search.model_dump(),
                                       [designer.key(s) for s in seeds.designs], seeds.scores)
        checkpoint = SearchCheckpoint(Path(resume_dir) / f"loop-{defense}-r{repeat}", fingerprint)
    result = run_search(searcher, designer, seeds.designs, seeds.scores, calls_per_seed, patience=loop.patience,
                        checkpoint=checkpoint)
    return result.table, r2


# -- curves --------------------------------------------------------------------------------------------------------
def curve(verified: pd.DataFrame, seed_scores: np.ndarray, checkpoints, offset: int = 0,
          cap: int | None = None) -> dict[str, Any]:
    """One method's curve in one repeat: mean over starts of the best-so-far and of the improvement at each C
    (read ``offset`` calls earlier when labelling is charged), and the calls it actually spent per start. A method
    run with at most ``cap`` calls per start has no value (None) at the checkpoints beyond it."""
    from tasks.search.anytime import best_so_far

    at = [c - offset for c in checkpoints]
    best = best_so_far(verified, seed_scores, at)
    reached = [cap is None or c <= cap for c in checkpoints]
    per_seed = verified.groupby("seed_index").size().reindex(range(len(seed_scores)), fill_value=0) \
        if len(verified) else pd.Series(0, index=range(len(seed_scores)))
    def at_each(value) -> dict[int, float | None]:
        return {c: float(value(best[:, j])) if reached[j] else None for j, c in enumerate(checkpoints)}

    return {
        "best_score": at_each(np.mean),
        "improvement": at_each(lambda b: (b - seed_scores).mean()),
        "success_rate": at_each(lambda b: (b > seed_scores).mean()),
        "oracle_calls": int(len(verified)),
        "calls_per_seed_min": int(per_seed.min()),
        "calls_per_seed_mean": float(per_seed.mean()),
    }


def summarise(per_repeat: list[dict[str, Any]], checkpoints) -> dict[str, Any]:
    """Mean ± std (population std over repeats) of each curve value, beside the raw per-repeat values."""
    out: dict[str, Any] = {}
    for quantity in ("best_score", "improvement", "success_rate"):
        out[quantity] = {}
        for c in checkpoints:
            values = [r[quantity][c] for r in per_repeat]
            missing = None in values
            out[quantity][str(c)] = {"mean": None if missing else float(np.mean(values)),
                                     "std": None if missing else float(np.std(values)), "per_repeat": values}
    for name in ("oracle_calls", "calls_per_seed_min", "calls_per_seed_mean", "wall_seconds"):
        out[name] = [r[name] for r in per_repeat]
    for name in ("candidates_per_seed_min", "candidates_per_seed_mean", "validation_r2", "lockstep_wall_seconds"):
        if name in per_repeat[0]:
            out[name] = [r[name] for r in per_repeat]
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checkpoints = result["checkpoints"]
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, summary in result["methods"].items():
        points = [(c, summary["improvement"][str(c)]) for c in checkpoints]
        points = [(c, v["mean"], v["std"]) for c, v in points if v["mean"] is not None]
        calls, mean, std = zip(*points)
        spent = np.mean(summary["calls_per_seed_mean"])
        label = (f"{method} (spent {spent:.0f}/start)" if spent < max(calls)
                 else f"{method} (capped at {max(calls)})" if max(calls) < max(checkpoints) else method)
        axis.errorbar(calls, mean, yerr=std, marker="o", capsize=3, label=label)
    axis.set_xscale("log")
    axis.set_xticks(checkpoints, [str(c) for c in checkpoints])
    axis.minorticks_off()
    axis.set_xlabel("oracle calls per starting design")
    axis.set_ylabel(f"best-so-far improvement ({result['score_unit']})")
    charged = " (labelling charged)" if result["labelling_charged"] else ""
    axis.set_title(f"{result['domain']}: {result['n_seeds']} starts, {result['repeats']} repeats{charged}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def merge_repeats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs that each measured some repeats (``--repeat-ids``) or methods of the same benchmark:
    the same domain, checkpoints, starts and labelling; no method's repeat measured twice. Each method's curves are
    re-summarised over its repeats in repeat order; oracle calls and times add up, the wall time is the longest
    run's (they ran side by side), the device lists where each run's oracle ran, and ``merged_from`` keeps each
    run's repeats, methods, device, wall time and load average (a merged file's runs, not the file)."""
    first = results[0]
    for result in results[1:]:
        for key in ("domain", "resolution", "checkpoints", "seeds", "labelling_calls", "labelling_charged"):
            if result.get(key) != first.get(key):
                raise SystemExit(f"--merge: the files differ in {key!r} ({first.get(key)!r} vs {result.get(key)!r})")
    checkpoints = first["checkpoints"]
    by_method: dict[str, dict[int, dict[str, Any]]] = {}
    for result in results:
        for method, summary in result["methods"].items():
            for repeat, one in zip(result.get("repeat_ids", range(result["repeats"])),
                                   unsummarise(summary, checkpoints)):
                if repeat in by_method.get(method, {}):
                    raise SystemExit(f"--merge: {method} repeat {repeat} measured twice")
                by_method.setdefault(method, {})[repeat] = one
    ids = sorted({r for per in by_method.values() for r in per})
    return {
        **first,
        "repeats": len(ids),
        "repeat_ids": ids,
        "settings": {**first["settings"], "repeat_ids": ",".join(map(str, ids))},
        "device": " + ".join(dict.fromkeys(r["device"] for r in results)),
        "oracle_calls_total": sum(r["oracle_calls_total"] for r in results),
        "oracle_invocations": sum(r["oracle_invocations"] for r in results),
        "oracle_seconds": round(sum(r["oracle_seconds"] for r in results), 1),
        "wall_seconds": max(r["wall_seconds"] for r in results),
        "methods": {m: summarise([per[r] for r in sorted(per)], checkpoints) for m, per in by_method.items()},
        # A file merged before keeps its own runs' entries, so repeats added later still show where each ran.
        "merged_from": [run for r in results for run in r.get("merged_from") or [_run_entry(r)]],
        "complete": all(r["complete"] for r in results),
    }


def _run_entry(result: dict[str, Any]) -> dict[str, Any]:
    """What ``merged_from`` keeps of one run."""
    return {"repeat_ids": result.get("repeat_ids"), "methods": list(result["methods"]), "device": result["device"],
            "oracle_max_batch": result["oracle_max_batch"], "wall_seconds": result["wall_seconds"],
            "load_average": result["load_average"]}


def unsummarise(summary: dict[str, Any], checkpoints) -> list[dict[str, Any]]:
    """The per-repeat curves :func:`summarise` was given, read back from its ``per_repeat`` lists."""
    n = len(summary["oracle_calls"])
    lists = [k for k, v in summary.items() if isinstance(v, list)]
    return [{**{q: {c: summary[q][str(c)]["per_repeat"][i] for c in checkpoints}
                for q in ("best_score", "improvement", "success_rate")},
             **{k: summary[k][i] for k in lists}} for i in range(n)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark for one domain, as one Prefect flow run (the labelling and training tasks are the
    campaign's, cached on their inputs); with ``--no-orchestration`` a plain function call. With ``--merge``: the
    named runs' JSONs joined (:func:`merge_repeats`), written to ``--output-dir`` and plotted."""
    if args.merge:
        result = merge_repeats([json.loads(Path(path).read_text()) for path in args.merge])
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
        if not args.no_plot:
            plot(result, output_dir / f"{args.name}.png")
        return result
    if args.no_orchestration:
        return _run(args)
    from prefect import flow

    @flow(name=f"equal-budget-{args.domain}")
    def equal_budget_flow() -> dict[str, Any]:
        return _run(args)

    return equal_budget_flow()


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from designers import make_designer
    from tasks import pure_stages
    from tasks.pure_stages import regression_metrics, training_config
    from tasks.search.black_box import run_black_box, run_black_box_repeats

    if args.no_orchestration:
        label = pure_stages.label_directly

        def train(data_id, defense, *rest):  # the task's arguments; the pure trainer has no cache key
            return pure_stages.train_surrogate(*rest)
        tracker = NoTracker()
    else:
        from tasks.prefect_tasks import oracle_in_batches as label, train_surrogate_task as train
        from tasks.tracking import Tracker

        tracking_uri = args.tracking_uri or f"sqlite:///{tempfile.mkdtemp(prefix='equal-budget-')}/mlflow.db"
        tracker = Tracker(tracking_uri, "equal-budget")
    if args.resume_dir:
        # Kept beside the loops' checkpoints: a restart labels nothing again, and finds the checkpoints.
        label = pure_stages.StoredLabels(args.resume_dir, label)
    prepare_data = partial(pure_stages.prepare_data, label=label)
    choose_seeds = partial(pure_stages.choose_seeds, label=label)

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    designer_params, data_params, surrogate_params, search_params = campaign_parameters(args)
    car_settings = {k: v for k, v in (("device", args.device), ("max_batch", args.max_batch)) if v is not None}
    designer = make_designer(args.domain, **designer_params.settings(), **car_settings)
    oracle_log = time_oracle(designer)
    settings = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    parent = tracker.start_run(f"equal-budget-{args.domain}", params={
        **settings, **{f"data.{k}": v for k, v in data_params.model_dump().items()},
        **{f"search.{k}": v for k, v in search_params.model_dump().items()},
        "surrogate.epochs": surrogate_params.epochs}, tags={"kind": "benchmark", "designer": args.domain})
    failed = True
    try:
        calls_before = designer.oracle_calls
        data = prepare_data(designer, data_params)
        seeds = choose_seeds(designer, data, data_params)
        labelling_calls = len(data.x_train) + len(data.x_val)
        n_seeds, top = len(seeds.designs), max(args.checkpoints)
        offset = math.ceil(labelling_calls / n_seeds) if args.charge_labelling else 0
        per_method: dict[str, list[dict[str, Any]]] = {}

        def record(method: str, repeat: int, verified: pd.DataFrame, wall: float, **extra: Any) -> None:
            charged = method.startswith(("gradient/", "loop/"))
            result = {**curve(verified, seeds.scores, args.checkpoints, offset if charged else 0,
                              args.max_calls.get(method)),
                      "wall_seconds": round(wall, 1), **extra}
            per_method.setdefault(method, []).append(result)
            with tracker.run(f"{method}-r{repeat}", parent_run_id=parent,
                             tags={"method": method, "repeat": str(repeat), "designer": args.domain}) as child:
                for c in args.checkpoints:
                    if result["best_score"][c] is None:
                        continue
                    tracker.log_metrics(child, {"best_score": result["best_score"][c],
                                                "improvement": result["improvement"][c],
                                                "success_rate": result["success_rate"][c]}, step=c)
                tracker.log_metrics(child, {k: v for k, v in result.items() if isinstance(v, (int, float))})
                if len(verified):
                    tracker.log_table(child, verified.drop(columns=[c for c in verified if c.startswith("_")]),
                                      "designs.json")
            if args.output_dir:
                write_json(partial_result(), complete=False)
            print(f"[{args.domain}] {method} r{repeat}: improvement "
                  + ", ".join(f"C={c}: {result['improvement'][c]:+.3f}" for c in args.checkpoints
                              if result["improvement"][c] is not None)
                  + f"; {result['oracle_calls']} calls, {wall:.0f} s", flush=True)

        def partial_result() -> dict[str, Any]:
            return {
                "domain": args.domain,
                "score_unit": "penalized logP" if args.domain == "molecule" else "top speed km/h",
                "resolution": ("smoke: plumbing only, ranking not validated" if args.resolution == "smoke"
                               else args.resolution) if args.domain == "car" else None,
                "checkpoints": list(args.checkpoints),
                "calls_count": "per starting design",
                "n_seeds": n_seeds,
                "repeats": len(args.repeat_ids),
                "repeat_ids": list(args.repeat_ids),
                "seed_scores": [float(s) for s in seeds.scores],
                "seeds": [designer.key(s) for s in seeds.designs],
                "labelling_calls": labelling_calls,
                "seed_pool_calls": len(data.pool),
                "labelling_charged": args.charge_labelling,
                "labelling_calls_per_seed_charged": offset,
                "oracle_calls_total": designer.oracle_calls - calls_before,
                "methods": {m: summarise(r, args.checkpoints) for m, r in per_method.items()},
                "wall_seconds": round(time.perf_counter() - started, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "torch_threads": args.threads,
                "orchestration": "none" if args.no_orchestration else "prefect+mlflow",
                "torch": torch.__version__,
                "device": device_name(designer),
                "oracle_max_batch": getattr(designer, "max_batch", None),
                "baselines_lockstep": args.lockstep,
                "oracle_invocations": oracle_log["invocations"],
                "oracle_seconds": round(oracle_log["seconds"], 1),
                "settings": {**settings, "data": data_params.model_dump(), "search": search_params.model_dump(),
                             "surrogate": surrogate_params.model_dump(), "designer": designer_params.model_dump()},
                "mlflow": None if args.no_orchestration else {
                    "tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent},
            }

        def write_json(result: dict[str, Any], complete: bool) -> None:
            path = Path(args.output_dir) / f"{args.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**result, "complete": complete}, indent=2) + "\n")

        for repeat in args.repeat_ids:
            for defense in args.defenses:
                method_started = time.perf_counter()
                model, _ = train(
                    data.data_id, defense, tuple(designer.input_shape), tuple(surrogate_params.hidden),
                    training_config(surrogate_params, defense, repeat), data.x_train, data.y_train, data.x_val,
                    data.y_val, data.x_unlabelled if defense == "vat" else None, designer.lower, designer.upper)
                calls = min(top, args.max_calls.get(f"gradient/{defense}", top)) - offset
                verified, available = run_gradient(designer, model, seeds, search_params, args.restarts,
                                                   args.restart_radius, repeat, args.restart_fraction, calls)
                record(f"gradient/{defense}", repeat, verified, time.perf_counter() - method_started,
                       candidates_per_seed_min=int(available.min()),
                       candidates_per_seed_mean=float(available.mean()),
                       validation_r2=regression_metrics(model, data.x_val, data.y_val)["validation_r2"])
            for defense in args.loop:
                method = f"loop/{defense}"
                method_started = time.perf_counter()
                calls = min(top, args.max_calls.get(method, top)) - offset
                verified, r2 = run_loop(designer, data, seeds, surrogate_params, search_params, defense, repeat,
                                        calls, args.resume_dir) if calls > 0 else (EMPTY, None)
                record(method, repeat, verified, time.perf_counter() - method_started,
                       **({} if r2 is None else {"validation_r2": r2}))
            for method in () if args.lockstep else args.baselines:
                method_started = time.perf_counter()
                calls = min(top, args.max_calls.get(method, top))
                verified = run_black_box(method, designer, seeds.designs, seeds.scores, calls, seed=repeat,
                                         max_edits=args.max_edits).table
                record(method, repeat, verified, time.perf_counter() - method_started)
        for method in args.baselines if args.lockstep else ():
            # All repeats in one driver run (searcher seed r for repeat r, as above); each repeat is charged an
            # equal share of the wall time, and the whole is kept beside it.
            method_started = time.perf_counter()
            calls = min(top, args.max_calls.get(method, top))
            tables, _ = run_black_box_repeats(method, designer, seeds.designs, seeds.scores, calls,
                                              list(args.repeat_ids), max_edits=args.max_edits)
            wall = time.perf_counter() - method_started
            for repeat, verified in zip(args.repeat_ids, tables):
                record(method, repeat, verified, wall / len(tables), lockstep_wall_seconds=round(wall, 1))

        result = {**partial_result(), "complete": True}
        for method, summary in result["methods"].items():
            for c in args.checkpoints:
                if summary["improvement"][str(c)]["mean"] is None:
                    continue
                tracker.log_metrics(parent, {f"{method}.improvement_mean": summary["improvement"][str(c)]["mean"],
                                             f"{method}.improvement_std": summary["improvement"][str(c)]["std"],
                                             f"{method}.best_score_mean": summary["best_score"][str(c)]["mean"]},
                                    step=c)
        tracker.log_metrics(parent, {"labelling_calls": labelling_calls, "wall_seconds": result["wall_seconds"],
                                     "oracle_calls_total": result["oracle_calls_total"]})
        tracker.log_dict(parent, result, f"{args.name}.json")
        output_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="equal-budget-"))
        output_dir.mkdir(parents=True, exist_ok=True)
        if not args.no_plot:
            picture = output_dir / f"{args.name}.png"
            plot(result, picture)
            tracker.log_artifact(parent, picture)
        if args.output_dir:
            write_json(result, complete=True)
        failed = False
        return result
    finally:
        tracker.end_run(parent, failed=failed)


class NoTracker:
    """``--no-orchestration``: the :class:`tasks.tracking.Tracker` calls this script makes, logging nothing."""

    uri = experiment_id = None

    def start_run(self, *args: Any, **kwargs: Any) -> None:
        return None

    def run(self, *args: Any, **kwargs: Any):
        from contextlib import nullcontext

        return nullcontext(None)

    def __getattr__(self, name: str):  # log_metrics, log_table, log_dict, log_artifact, end_run
        return lambda *args, **kwargs: None


def time_oracle(designer: Any) -> dict[str, float]:
    """Count and time every call of ``designer.oracle`` (one call may be many blueprints): a GPU oracle costs per
    call. Returns the live counters."""
    log = {"invocations": 0, "seconds": 0.0}
    oracle = designer.oracle

    def timed(designs):
        begun = time.perf_counter()
        try:
            return oracle(designs)
        finally:
            log["invocations"] += 1
            log["seconds"] += time.perf_counter() - begun

    designer.oracle = timed
    return log


def device_name(designer: Any) -> str:
    """Where the oracle runs, as the JSON records it."""
    import torch

    device = getattr(designer, "device", None)
    if device is None:
        return "cpu (no device setting)"
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return str(device)


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
