"""Throughput of the flow kernels against the memory-bandwidth bound, and seconds per car blueprint, side by side.

One run measures, on the same machine and thread count, interleaved so that the load of other processes hits both
alike (the machine is shared: compare the ratios inside one JSON, not numbers across runs):

* ``bandwidth_gb_s``: copy bandwidth (read + write of a 256 MiB float32 buffer with the benchmark's thread count;
  best of 10) and ``bound_mlups``: what it allows for D2Q9 float32 at 72 bytes per cell update;
* per kernel (``torch_eager``, ``torch_compiled``: the old step of ``designers/lbm.py``; ``numba``: the fused kernel
  of ``designers/lbm_numba.py``) and batch size, ``--steps`` steps with the oracle's proportions (ramp over the first
  quarter, force every 4 steps): ``mlups`` (wall clock, best of ``--repeats``), ``cpu_mlups``
  (per CPU-second of this process, less sensitive to other processes), ``bytes_per_cell_update`` (the kernel's
  minimum traffic), ``ratio_to_bound``;
* ``seconds_per_blueprint``: the coarse oracle end to end (``CarDesigner.oracle`` on ``--coarse-batch`` blueprints,
  torch compile time excluded and reported apart), old and new on the same blueprints, with the largest relative
  difference of their top speeds; ``fine`` estimated from the numba kernel's throughput on the fine lattice.

    python benchmarks/lbm_throughput.py [--threads N] [--coarse-batch 32] [--skip-compile] [--device cuda]
                                        [--batches 1,32] [--output benchmarks/results/lbm_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from designers import lbm_numba
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


KERNELS = {  # name → simulate() arguments
    "torch_eager": {"kernel": "torch", "compile": False},
    "torch_compiled": {"kernel": "torch", "compile": True},
    "numba": {"kernel": "numba"},
}
KERNEL_BYTES = {"torch_eager": BYTES_PER_CELL_UPDATE, "torch_compiled": BYTES_PER_CELL_UPDATE,
                "numba": lbm_numba.BYTES_PER_CELL_UPDATE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every kernel and of the copy (default: torch's, i.e. all cores)")
    parser.add_argument("--coarse-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="time steps per throughput measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is reported")
    parser.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (20-50 s per shape)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda: the torch kernels only)")
    parser.add_argument("--batches", default="1,32", help="lattice batch sizes of the MLUPS measurement")
    parser.add_argument("--output", default="benchmarks/results/lbm_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)

    report: dict = {"threads": threads, "load_average_1min_start": round(os.getloadavg()[0], 2),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__}
    if lbm_numba.available():
        import numba

        report["numba"] = numba.__version__
    bandwidth = copy_bandwidth_gb_s(device=device)
    bound = bandwidth * 1e9 / BYTES_PER_CELL_UPDATE / 1e6
    report.update({"bandwidth_gb_s": round(bandwidth, 2), "bound_mlups": round(bound, 1)})

    kernels = [k for k in KERNELS if not (args.skip_compile and k == "torch_compiled")
               and not (k == "numba" and (device.type != "cpu" or not lbm_numba.available()))]
    coarse = CarDesigner(resolution="coarse", device=device, compile=False)
    batches = [int(b) for b in args.batches.split(",")]
    problems = {}
    for batch in batches:
        masks, geometry = coarse.rasterise(coarse.sample(batch, np.random.default_rng(0)))
        problems[batch] = coarse.flow_problem(masks, geometry)
    report["lattice"] = [int(geometry["ny"]), int(geometry["nx"])]

    def run(kernel: str, batch: int, steps: int):
        # The oracle's proportions: start-up ramp over the first quarter, force sampled every 4 steps.
        return simulate(problems[batch], steps, ramp_steps=steps // 4, force_every=4, device=device,
                        threads=threads, **KERNELS[kernel])

    warm_up = {}
    for kernel in kernels:  # compiles (torch: once per lattice shape; numba: once, cached on disk)
        for batch in batches:
            start = time.perf_counter()
            run(kernel, batch, 2)
            warm_up[(kernel, batch)] = time.perf_counter() - start
    best: dict = {}
    for _ in range(args.repeats):  # interleaved: a burst of load from elsewhere hits every kernel alike
        for kernel in kernels:
            for batch in batches:
                cpu = time.process_time()
                result = run(kernel, batch, args.steps)
                cpu = time.process_time() - cpu
                wall, cpu_mlups = result.cell_updates / result.seconds / 1e6, result.cell_updates / cpu / 1e6
                key = (kernel, batch)
                best[key] = (max(best.get(key, (0, 0))[0], wall), max(best.get(key, (0, 0))[1], cpu_mlups))
    report["mlups"] = {}
    for (kernel, batch), (wall, cpu_mlups) in best.items():
        report["mlups"][f"{kernel}_batch{batch}"] = {
            "mlups": round(wall, 2), "cpu_mlups": round(cpu_mlups, 2),
            "bytes_per_cell_update": KERNEL_BYTES[kernel], "ratio_to_bound": round(wall / bound, 3),
            "warm_up_s": round(warm_up[(kernel, batch)], 1),
        }
    largest = max(batches)
    if "numba" in kernels:
        old = "torch_compiled" if "torch_compiled" in kernels else "torch_eager"
        report["numba_over_" + old] = round(best[("numba", largest)][0] / best[(old, largest)][0], 2)

    # Coarse oracle end to end, old and new on the same blueprints.
    designs = coarse.sample(args.coarse_batch, np.random.default_rng(1))
    oracles = {}
    if "numba" in kernels:
        oracles["numba"] = CarDesigner(resolution="coarse", kernel="numba", threads=threads,
                                       max_batch=args.coarse_batch)
    oracles["torch_compiled" if not args.skip_compile else "torch_eager"] = CarDesigner(
        resolution="coarse", kernel="torch", compile=not args.skip_compile, device=device, threads=threads,
        max_batch=args.coarse_batch)
    seconds, scores = {}, {}
    for name, oracle in oracles.items():
        masks, geometry = oracle.rasterise(designs)
        start = time.perf_counter()
        simulate(oracle.flow_problem(masks, geometry), 2, compile=oracle.compile, device=device,
                 kernel=oracle.kernel)  # compiles; untimed
        compile_s = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        result = oracle.oracle(designs)
        seconds[name] = {"seconds_per_blueprint": round((time.perf_counter() - start) / len(designs), 3),
                         "cpu_seconds_per_blueprint": round((time.process_time() - cpu) / len(designs), 3),
                         "compile_s": round(compile_s, 1), "valid": int(result.valid.sum())}
        scores[name] = result.scores
    names = list(scores)
    report["seconds_per_blueprint"] = {"coarse_batch": len(designs), **seconds}
    if len(names) == 2:
        a, b = scores[names[0]], scores[names[1]]
        both = np.isfinite(a) & np.isfinite(b)
        report["seconds_per_blueprint"]["speedup"] = round(
            seconds[names[1]]["seconds_per_blueprint"] / seconds[names[0]]["seconds_per_blueprint"], 2)
        report["seconds_per_blueprint"]["top_speed_max_relative_difference"] = float(
            np.max(np.abs(a[both] / b[both] - 1))) if both.any() else None

    if "numba" in kernels:  # fine lattice: numba throughput at batch 8, extrapolated to a full run
        fine = CarDesigner(resolution="fine", compile=False)
        masks, geometry = fine.rasterise(fine.sample(8, np.random.default_rng(0)))
        problem = fine.flow_problem(masks, geometry)
        result = simulate(problem, args.steps, ramp_steps=args.steps // 4, force_every=4, kernel="numba",
                          threads=threads)
        fine_mlups = result.cell_updates / result.seconds / 1e6
        fine_steps = round(fine.resolution.flow_times * fine.reference_height_m * fine.resolution.cells_per_metre
                           / fine.lattice_speed)
        fine_updates = fine_steps * int(geometry["nx"]) * int(geometry["ny"])
        report["fine_numba"] = {"batch8_mlups": round(fine_mlups, 2), "lattice": [int(geometry["ny"]),
                                int(geometry["nx"])], "steps": fine_steps,
                                "seconds_per_blueprint_estimated": round(fine_updates / (fine_mlups * 1e6), 2)}
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
