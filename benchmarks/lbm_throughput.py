"""Throughput of the lattice-Boltzmann solver against the memory-bandwidth bound; seconds per car blueprint.

Prints one JSON object:

* ``bandwidth_gb_s``: measured copy bandwidth (read + write of a 256 MiB float32 tensor);
* ``bound_mlups``: what that bandwidth allows for D2Q9 float32 (72 bytes per cell update);
* ``mlups``: million lattice-cell updates per second on the coarse car lattice at batch 1 and 32, eager and
  compiled, with ``ratio_to_bound``;
* ``seconds_per_blueprint``: ``coarse`` measured end to end through ``CarDesigner.oracle`` on a batch (compile time
  excluded, reported apart), ``fine`` estimated from the throughput measured on the fine lattice (a full fine run
  is minutes per batch; ``benchmarks/car_resolution.py`` times it end to end).

The machine may be shared: the load average is printed with the numbers.

    python benchmarks/lbm_throughput.py [--threads N] [--coarse-batch 32] [--skip-compile] [--device cuda]
                                        [--batches 1,32,256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from designers.car import CarDesigner
from designers.lbm import BYTES_PER_CELL_UPDATE, simulate


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth_gb_s(megabytes: int = 256, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """Best-of-``repeats`` bandwidth of a large tensor copy (bytes read plus bytes written per second)."""
    device = torch.device(device)
    source = torch.ones(megabytes * 2**20 // 4, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def lattice_mlups(designer: CarDesigner, batch: int, steps: int, compile: bool) -> tuple[float, float]:
    """MLUPS of ``steps`` time steps of ``batch`` car geometries (after a warm-up that also compiles)."""
    designs = designer.sample(batch, np.random.default_rng(0))
    masks, geometry = designer.rasterise(designs)
    problem = designer.flow_problem(masks, geometry)
    start = time.perf_counter()
    simulate(problem, 2, compile=compile, device=designer.device)  # warm-up; compiles once per lattice shape
    warm_up = time.perf_counter() - start
    result = simulate(problem, steps, ramp_steps=steps, force_every=4, compile=compile, device=designer.device)
    return result.cell_updates / result.seconds / 1e6, warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--coarse-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="time steps per throughput measurement")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batches", default="1,32", help="lattice batch sizes of the MLUPS measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    report: dict = {"threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
                    "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"}
    bandwidth = copy_bandwidth_gb_s(device=args.device)
    bound = bandwidth * 1e9 / BYTES_PER_CELL_UPDATE / 1e6
    report.update({"bandwidth_gb_s": round(bandwidth, 2), "bound_mlups": round(bound, 1)})

    coarse = CarDesigner(resolution="coarse", compile=not args.skip_compile, device=args.device,
                         max_batch=args.coarse_batch)
    modes = [False] if args.skip_compile else [False, True]
    report["mlups"] = {}
    for compile in modes:
        for batch in (int(b) for b in args.batches.split(",")):
            mlups, warm_up = lattice_mlups(coarse, batch, args.steps, compile)
            report["mlups"][f"{'compiled' if compile else 'eager'}_batch{batch}"] = {
                "mlups": round(mlups, 2), "ratio_to_bound": round(mlups / bound, 3), "warm_up_s": round(warm_up, 1),
            }

    designs = coarse.sample(args.coarse_batch, np.random.default_rng(1))
    masks, geometry = coarse.rasterise(designs)
    simulate(coarse.flow_problem(masks, geometry), 2, compile=coarse.compile, device=coarse.device)  # compiles; untimed
    start = time.perf_counter()
    result = coarse.oracle(designs)
    coarse_seconds = (time.perf_counter() - start) / len(designs)
    fine = CarDesigner(resolution="fine", compile=not args.skip_compile, device=args.device)  # 16 cells/m
    fine_mlups, _ = lattice_mlups(fine, 8, args.steps // 2, not args.skip_compile)
    masks, geometry = fine.rasterise(designs[:1])
    fine_steps = round(fine.resolution.flow_times * fine.reference_height_m * fine.resolution.cells_per_metre
                       / fine.lattice_speed)
    fine_updates = fine_steps * int(geometry["nx"]) * int(geometry["ny"])
    report["seconds_per_blueprint"] = {
        "coarse": round(coarse_seconds, 3),
        "coarse_batch": len(designs),
        "coarse_valid": int(result.valid.sum()),
        "fine_estimated": round(fine_updates / (fine_mlups * 1e6), 1),
        "fine_batch8_mlups": round(fine_mlups, 2),
        "fine_lattice": [int(geometry["ny"]), int(geometry["nx"])],
        "fine_steps": fine_steps,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
