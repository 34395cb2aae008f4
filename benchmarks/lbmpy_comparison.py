"""Our torch D2Q9 step against lbmpy's generated C kernels on a comparable 2-D case (same cell count, one grid).

lbmpy is not a project dependency (see ``docs/car-oracle.md`` for why); install it into the environment to run its
half (``pip install lbmpy``), otherwise that half reports ``"not installed"``. lbmpy runs a lid-driven cavity with
SRT and with Smagorinsky-SRT; ours runs a uniform stream through a periodic box with sponges (our step always does
BGK + bulk viscosity + Smagorinsky, the car's collision). Prints one JSON object of MLUPS figures.

    python benchmarks/lbmpy_comparison.py [--size 256] [--steps 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from designers.lbm import FlowProblem, simulate


def ours(size: int, steps: int, batch: int, compile: bool) -> dict:
    body = torch.zeros(batch, size, size, dtype=torch.bool)
    body[:, size // 2 - 8 : size // 2 + 8, size // 4 : size // 4 + 16] = True
    far_field = torch.zeros(2, size, size)
    far_field[0] = 0.05
    sponge = torch.zeros(size, size)
    sponge[:, :8] = 0.5
    problem = FlowProblem(
        body=body, walls=torch.zeros(size, size, dtype=torch.bool), far_field=far_field, sponge=sponge, viscosity=0.01
    )
    start = time.perf_counter()
    simulate(problem, 2, compile=compile)
    warm_up = time.perf_counter() - start
    result = simulate(problem, steps, ramp_steps=steps, force_every=4, compile=compile)
    return {"mlups": round(result.cell_updates / result.seconds / 1e6, 2), "warm_up_s": round(warm_up, 1)}


def lbmpy_cavity(size: int, steps: int) -> dict:
    try:
        from lbmpy import LBMConfig, Method, Stencil
        from lbmpy.enums import SubgridScaleModel
        from lbmpy.scenarios import create_lid_driven_cavity
    except ImportError as error:
        return {"status": f"not installed ({error})"}
    out = {}
    for label, extra in (("srt", {}), ("smagorinsky_srt", {"subgrid_scale_model": (SubgridScaleModel.SMAGORINSKY, 0.1)})):
        try:
            config = LBMConfig(stencil=Stencil.D2Q9, method=Method.SRT, relaxation_rate=1.9, **extra)
            start = time.perf_counter()
            scenario = create_lid_driven_cavity(domain_size=(size, size), lbm_config=config)
            scenario.run(1)
            build = time.perf_counter() - start
            start = time.perf_counter()
            scenario.run(steps)
            mlups = size * size * steps / (time.perf_counter() - start) / 1e6
            out[label] = {"mlups": round(mlups, 2), "code_generation_s": round(build, 1)}
        except Exception as error:  # noqa: BLE001 — report, do not hide, what lbmpy could not do
            out[label] = {"status": f"failed: {type(error).__name__}: {error}"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "cells": args.size**2,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "ours_eager_batch1": ours(args.size, args.steps // 5, 1, compile=False),
        "ours_compiled_batch1": ours(args.size, args.steps, 1, compile=True),
        "lbmpy": lbmpy_cavity(args.size, args.steps),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
