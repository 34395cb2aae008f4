"""Speed and memory of the molecule pipeline, printed as JSON (targets from the pipeline issue, not timed tests).

    python benchmarks/molecule_pipeline.py              # all three
    python benchmarks/molecule_pipeline.py oracle search

- oracle: penalized-logP labelling throughput with all cores (target ≥ 1,000 molecules/s).
- search: gradient search, 800 seeds × 100 steps as one batched tensor on a trained-size surrogate (target ≤ 60 s).
- campaign: `advdesign campaign --quick` in a fresh process: wall time and peak memory of the process tree
  (targets ≤ 180 s and ≤ 4 GB), Prefect start-up included. Uses a throw-away MLflow store and Prefect home.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def bench_oracle(n: int = 20_000) -> dict:
    from designers import chem
    from designers.molecule import MoleculeDesigner

    designer = MoleculeDesigner()
    smiles = designer.sample(n, np.random.default_rng(1))
    chem.score_molecules(smiles[:2_000], "plogp")  # start the worker pool outside the timing
    start = time.perf_counter()
    result = designer.oracle(smiles)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    designer.encode(smiles)
    encode_seconds = time.perf_counter() - start
    return {"molecules": n, "workers": chem.default_workers(), "seconds": round(seconds, 2),
            "molecules_per_second": round(n / seconds), "target_molecules_per_second": 1000,
            "failures": int((~result.valid).sum()),
            "selfies_encode_molecules_per_second": round(n / encode_seconds)}


def bench_search(n_seeds: int = 800, steps: int = 100) -> dict:
    import torch

    from designers.molecule import MoleculeDesigner
    from tasks.search.gradient import SearchConfig, gradient_search
    from tasks.surrogate import Surrogate

    designer = MoleculeDesigner()
    model = Surrogate(designer.input_shape, (512, 256)).eval()
    x0 = designer.encode(designer.sample(n_seeds, np.random.default_rng(2)))
    out = {"seeds": n_seeds, "steps": steps, "torch_threads": torch.get_num_threads(), "target_seconds": 60}
    for method in ("l2", "signed"):
        start = time.perf_counter()
        trajectory = gradient_search(model, x0, SearchConfig(method=method, steps=steps, step_size=0.2),
                                     designer.project, lambda x: designer.discretize(x, reference=x0), 0.0, 1.0)
        seconds = time.perf_counter() - start
        out[method] = {"seconds": round(seconds, 2), "seed_steps_per_second": round(n_seeds * steps / seconds),
                       "distinct_points_recorded": len(trajectory),
                       "trajectory_megabytes": round(trajectory.points.numel() * trajectory.points.element_size() / 2**20, 1)}
    return out


def bench_campaign() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PREFECT_HOME": os.path.join(tmp, "prefect"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        summary_path = os.path.join(tmp, "summary.json")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "advdesign.cli", "campaign", "--quick", "--json", summary_path],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        summary = json.load(open(summary_path))
    # ru_maxrss of children: the largest single process (the flow process; RDKit workers are far smaller).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_seconds": round(wall, 1), "target_wall_seconds": 180, "peak_rss_megabytes": round(peak_mb),
            "target_peak_megabytes": 4096, "flow_wall_seconds": summary["wall_seconds"],
            "oracle_calls": summary["oracle_calls"],
            "defenses": {d: {k: r.get(k) for k in ("success_rate", "transfer_rate", "oracle_improvement_mean",
                                                   "predicted_improvement_mean")}
                         for d, r in summary["defenses"].items()}}


BENCHMARKS = {"oracle": bench_oracle, "search": bench_search, "campaign": bench_campaign}

if __name__ == "__main__":
    import advdesign.environment  # noqa: F401

    chosen = sys.argv[1:] or list(BENCHMARKS)
    print(json.dumps({name: BENCHMARKS[name]() for name in chosen}, indent=2))
