"""Does the coarse car oracle rank blueprints like the fine one?

Scores one sample of blueprints at two resolutions and prints one JSON object with the Spearman rank correlation
of their 2-D drag coefficients (and of the top speeds, which add frontal area and mass), the per-blueprint wall
time of each resolution and the values themselves. The search runs on the coarse oracle; its ranking is only useful
if it agrees with the fine one used for final verification.

    python benchmarks/car_resolution.py [--n 12] [--coarse coarse] [--fine fine] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from designers.car import CarDesigner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="blueprints in the sample")
    parser.add_argument("--coarse", default="coarse")
    parser.add_argument("--fine", default="fine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    designs = CarDesigner(compile=False).sample(args.n, np.random.default_rng(args.seed))
    report: dict = {"n": args.n, "threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]}
    results = {}
    for label in (args.coarse, args.fine):
        designer = CarDesigner(resolution=label)
        start = time.perf_counter()
        results[label] = designer.oracle(designs)
        report[f"seconds_per_blueprint_{label}"] = round((time.perf_counter() - start) / args.n, 2)
        report[f"failures_{label}"] = [f for f in results[label].failures if f is not None]
    both = results[args.coarse].valid & results[args.fine].valid
    drag = {label: results[label].extras["C_D"][both] for label in results}
    speed = {label: results[label].scores[both] for label in results}
    report["valid_in_both"] = int(both.sum())
    report["spearman_drag"] = round(float(spearmanr(drag[args.coarse], drag[args.fine]).statistic), 3)
    report["spearman_top_speed"] = round(float(spearmanr(speed[args.coarse], speed[args.fine]).statistic), 3)
    report["drag_coefficients"] = {label: np.round(values, 3).tolist() for label, values in drag.items()}
    report["top_speed_km_h"] = {label: np.round(values, 1).tolist() for label, values in speed.items()}
    report["note"] = "2-D flow at Re_h = 400: a model of a car, not a wind tunnel; compile time included in seconds"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
