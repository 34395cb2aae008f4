"""Peak memory of the car oracle when several threads score batches at once, as Prefect's thread runner does.

Each of ``--threads`` Python threads scores its own batch of ``--batch`` coarse blueprints on one shared
:class:`designers.car.CarDesigner` (compiled step, one torch thread each); prints the process's peak RSS as JSON.
Before the force samples were preallocated (designers/lbm.py) four threads peaked at 8.2 GB here (one: 3.1 GB),
glibc's per-thread heaps fragmented by small long-lived tensors between the large per-step buffers.

    python benchmarks/car_oracle_memory.py [--threads 4] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="concurrent oracle calls")
    parser.add_argument("--batch", type=int, default=32, help="blueprints per call (one compiled chunk)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from designers.car import CarDesigner

    torch.set_num_threads(1)
    designer = CarDesigner(threads=1, compile=not args.no_compile, max_batch=args.batch)
    designs = designer.sample(args.threads * args.batch, np.random.default_rng(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    failures: list[int] = []

    def score(part: list) -> None:
        failures.append(int((~designer.oracle(part).valid).sum()))

    started = time.perf_counter()
    workers = [threading.Thread(target=score, args=(designs[i * args.batch:(i + 1) * args.batch],))
               for i in range(args.threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({
        "threads": args.threads, "batch": args.batch, "compiled": not args.no_compile,
        "blueprints": len(designs), "failures": sum(failures),
        "peak_rss_gb_before": round(before, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
