"""Speed of the pipeline's three engines: gradient search, oracles, Prefect orchestration. Prints one JSON object,
saves it (``benchmarks/results/speed.json``) and logs it to MLflow (a throw-away store unless ``--tracking-uri``).

    python benchmarks/speed.py [search oracle orchestration] [--threads 1] [--car-batch 32] [--tracking-uri URI]

Every number is measured in this run, beside the torch thread count and the load average (the machine may be
shared: on a loaded one, read the ratios rather than the absolute rates).

**matmul**: this CPU's float32 matmul rate, best of five n × n products for n = 1024 and 2048 (2n³ FLOPs each),
the better size counting, at the benchmark's thread count; measured at the start, and right before and after
each search batch size, whose ratios use the better of those two.

**search**: gradient search on a molecule surrogate of the campaign's default shape (55 × 27 one-hot in,
``SurrogateParameters().hidden`` hidden layers, trained for 5 epochs on 2,000 molecules so that as many designs
change per step as in a campaign: the weights do not change the FLOPs, but record()'s work is per changed design),
``l2`` steps, at batch 1, 64 and 1024 seeds:

* ``search``: ``tasks.search.gradient_search`` as the campaign calls it (projection, discretisation, recording of
  every changed design included); ``design_steps_per_second`` and ``designs_per_second`` for a whole
  ``--steps``-step search.
* ``bare``: only the forward + input-gradient backward pass, ``--steps`` times on the same batch.
* FLOPs are counted analytically for the Linear layers only (bias adds, SiLU, the L2 step, projection and
  arg-max are elementwise and left out): forward ``F = 2 · Σ in·out`` per design; the search asks for the
  gradient with respect to the input only (``torch.autograd.grad(…, x)``), so autograd skips the weight gradients
  and the backward pass is one more ``grad_out · W`` product per layer, also ``F`` (not the 2F of training's
  backward, which adds weight gradients): ``2F`` per design and step. ``record()`` adds a forward (``F``) on every
  design that changed at that step, and on every seed at step 0; the search's count uses the number of designs
  actually recorded. ``tests/benchmarks/test_speed_benchmark.py`` checks this count against torch's FlopCounterMode.
* ``ratio_to_matmul``: achieved FLOP/s over the matmul rate. ``width1_floor_seconds_per_step``: the bare pass
  on the same network with hidden width 1 (the same operators forward and backward, the same input copy, almost
  no FLOPs). Where a step costs little more than this floor and many times ``seconds_per_step_at_matmul_rate``
  (batch 1), it is bound by per-operator overhead, not arithmetic. ``bookkeeping_share_of_search_time``:
  1 − bare / search, the time the search spends outside the forward + backward pass (L2 step, projection,
  discretisation, record()).

**oracle**: molecules through ``benchmarks/molecule_pipeline.py``'s own measurement (penalized logP on the
designer's process pool, 20,000 MOSES molecules); cars: one batch of ``--car-batch`` blueprints through
``CarDesigner.oracle`` with the campaign's default settings (coarse lattice, compiled, one thread), the compile
(once per lattice shape and process) timed apart.

**orchestration**: ``campaign(CampaignParameters.quick())`` (the molecule quick campaign) with a throw-away
Prefect home (so no task is a cache hit) and MLflow store. The caller's wall time is split by wrapping, for the
length of the run only, (a) the flow's function, (b) every task's function (``Task.fn``: the task body) and
(c) every place the flow's code hands work to Prefect (the stage's ``oracle_in_batches`` — submit and wait —,
the direct call of the training task, the markdown artifact). Then

* ``flow_engine_seconds`` = caller wall − flow function: flow-run creation, parameter validation and
  serialisation, state changes, persisting the flow's result;
* ``task_engine_seconds`` = time inside (c) − wall time covered by at least one task body: task-run creation,
  cache-key hashing of the inputs, state changes, result persistence, thread hand-over (task bodies that run
  concurrently count once; a body's share overlapping another's engine time counts as work);
* ``orchestration_seconds`` = the sum of the two, and ``orchestration_share`` = that over the caller's wall.
  The rest is work: task bodies (oracle batches, training) and the flow's own code between Prefect calls
  (encoding, the gradient search, metrics, MLflow logging, pictures). Two small misattributions, both
  milliseconds: ``oracle_in_batches``'s own glue (designer fingerprint, concatenating the batches' results)
  counts as orchestration, and the flow's ``get_run_logger()`` calls count as work.

Not in the share: the ephemeral API's start-up, measured apart (``startup``: the first empty flow in this
process on a fresh Prefect home — database created and migrated, API server started — then a second empty flow,
and the first and second empty flow of a new process on the now existing home); the import of Prefect; and the
CPU the API server's process burns meanwhile (``api_server_cpu_seconds``: on 2 shared cores that time is taken
from the work, which then runs slower, so it is reported beside the share, not inside it). Two cross-checks:
Prefect's own record (each task run's and the flow run's ``total_run_time`` from the API, against the bodies
measured here) and a no-op estimate (the per-call overhead of a no-op task with the campaign's cache policy, called
50 times directly and 50 times through ``submit().result()``, times the campaign's task runs, plus an empty
flow's overhead).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

BENCHMARKS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS_DIR.parent))
sys.path.insert(0, str(BENCHMARKS_DIR))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

DEFAULT_OUTPUT = BENCHMARKS_DIR / "results" / "speed.json"
SECTIONS = ("search", "oracle", "orchestration")


# -- FLOP counting ----------------------------------------------------------------------------------------------
def linear_layers(model: nn.Module) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of every Linear layer, in order."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def forward_flops_per_design(model: nn.Module) -> int:
    """Multiply-adds of the Linear layers, two FLOPs each: ``2 · Σ in·out``."""
    return sum(2 * n_in * n_out for n_in, n_out in linear_layers(model))


def input_gradient_flops_per_design(model: nn.Module) -> int:
    """Forward plus a backward pass for the input gradient only: each layer's ``grad_in = grad_out · W`` costs
    as much as its forward product, and autograd skips the weight gradients nobody asked for."""
    return 2 * forward_flops_per_design(model)


def search_flops(model: nn.Module, batch: int, steps: int, recorded_designs: int) -> int:
    """A whole search: ``steps`` input-gradient passes over the batch, plus record()'s forward on every design it
    recorded (all seeds at step 0, afterwards only the designs whose discrete point changed)."""
    return steps * batch * input_gradient_flops_per_design(model) + recorded_designs * forward_flops_per_design(model)


# -- timing helpers ---------------------------------------------------------------------------------------------
def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def matmul_flops_per_second(sizes: Sequence[int] = (1024, 2048), repeats: int = 5) -> dict:
    """Best-of-``repeats`` float32 ``n × n`` matmul rate per size, and the best over sizes (FLOP/s)."""
    rates = {}
    generator = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=generator)
        b = torch.randn(n, n, generator=generator)
        out = torch.empty(n, n)
        torch.matmul(a, b, out=out)  # first call allocates and warms the BLAS threads
        rates[n] = 2 * n**3 / best_seconds(lambda: torch.matmul(a, b, out=out), repeats)
    return {"per_size_gflop_per_second": {str(n): round(r / 1e9, 2) for n, r in rates.items()},
            "flop_per_second": max(rates.values())}


# -- gradient search --------------------------------------------------------------------------------------------
def input_gradient_passes(model: nn.Module, x0: torch.Tensor, steps: int) -> None:
    """``steps`` forward + input-gradient passes on ``x0`` (what a search step costs without its bookkeeping)."""
    for _ in range(steps):
        x = x0.clone().requires_grad_(True)
        torch.autograd.grad(model(x).sum(), x)


def briefly_trained_surrogate(designer, hidden: Sequence[int], n_labelled: int = 2_000, epochs: int = 5):
    """A surrogate trained a little on penalized logP. Speed does not depend on the weights, but how many
    designs change per step does, and record() decodes and re-predicts exactly those: random weights barely
    move a one-hot, a trained surrogate's gradient flips tokens as in a campaign."""
    from tasks.surrogate import Surrogate
    from tasks.training import TrainingConfig, train_model

    molecules = designer.sample(n_labelled, np.random.default_rng(3))
    scores = designer.oracle(molecules).scores
    keep = np.isfinite(scores)
    x = designer.encode([m for m, k in zip(molecules, keep) if k])
    y = torch.tensor(scores[keep], dtype=torch.float32)
    n_val = len(x) // 10
    model = Surrogate(designer.input_shape, hidden)
    model.set_target_scale(y[n_val:])
    history = train_model(model, x[n_val:], y[n_val:], x[:n_val], y[:n_val], TrainingConfig(epochs=epochs))
    return model.eval(), {"n_labelled": int(keep.sum()), "epochs": epochs,
                          "validation_loss": round(history.epochs[-1].validation_loss, 4)}


def bench_search(batch_sizes: Sequence[int], steps: int, repeats: int) -> dict:
    from designers.molecule import MoleculeDesigner
    from flows.parameters import SurrogateParameters
    from tasks.search.gradient import SearchConfig, gradient_search
    from tasks.surrogate import Surrogate

    designer = MoleculeDesigner()
    hidden = SurrogateParameters().hidden
    torch.manual_seed(0)
    model, training = briefly_trained_surrogate(designer, hidden)
    floor_model = Surrogate(designer.input_shape, (1,) * len(hidden)).eval()
    forward = forward_flops_per_design(model)
    out: dict = {"input_shape": list(designer.input_shape), "hidden": list(hidden), "surrogate": training,
                 "method": "l2", "steps": steps,
                 "linear_layers": linear_layers(model), "forward_flops_per_design": forward,
                 "input_gradient_flops_per_design": input_gradient_flops_per_design(model), "batches": {}}
    pool = designer.sample(max(batch_sizes), np.random.default_rng(2))
    for batch in batch_sizes:
        # The reference rate is measured right before and after each batch (on a shared machine the load moves);
        # the better of the two counts, so a ratio is never flattered by a slow reference.
        matmul_before = matmul_flops_per_second()["flop_per_second"]
        x0 = designer.encode(pool[:batch])
        config = SearchConfig(method="l2", steps=steps, step_size=0.2)
        discretize = functools.partial(designer.discretize, reference=x0)
        last: dict = {}

        def search() -> None:
            last["trajectory"] = gradient_search(model, x0, config, designer.project, discretize,
                                                 designer.lower, designer.upper)

        # Fewer repeats for the large batch: each takes seconds, so noise is already small.
        search_repeats = repeats if batch * steps <= 64 * 100 else max(1, repeats - 1)
        search_seconds = best_seconds(search, search_repeats)
        recorded = len(last["trajectory"])
        bare_seconds = best_seconds(lambda: input_gradient_passes(model, x0, steps), repeats)
        floor_seconds = best_seconds(lambda: input_gradient_passes(floor_model, x0, steps), repeats)
        matmul_after = matmul_flops_per_second()["flop_per_second"]
        matmul_rate = max(matmul_before, matmul_after)
        total_flops = search_flops(model, batch, steps, recorded)
        bare_flops = steps * batch * input_gradient_flops_per_design(model)
        out["batches"][str(batch)] = {
            "matmul_gflop_per_second": round(matmul_rate / 1e9, 2),
            "matmul_gflop_per_second_before_after": [round(matmul_before / 1e9, 2), round(matmul_after / 1e9, 2)],
            "search": {
                "seconds": round(search_seconds, 4),
                "design_steps_per_second": round(batch * steps / search_seconds, 1),
                "designs_per_second": round(batch / search_seconds, 2),
                "recorded_designs": recorded,
                "record_forward_share_of_flops": round(recorded * forward / total_flops, 4),
                "gflop": round(total_flops / 1e9, 3),
                "gflop_per_second": round(total_flops / search_seconds / 1e9, 3),
                "ratio_to_matmul": round(total_flops / search_seconds / matmul_rate, 4),
            },
            "bare": {
                "seconds_per_step": round(bare_seconds / steps, 7),
                "design_steps_per_second": round(batch * steps / bare_seconds, 1),
                "gflop_per_second": round(bare_flops / bare_seconds / 1e9, 3),
                "ratio_to_matmul": round(bare_flops / bare_seconds / matmul_rate, 4),
                "seconds_per_step_at_matmul_rate": round(bare_flops / steps / matmul_rate, 7),
            },
            "bookkeeping_share_of_search_time": round(1 - bare_seconds / search_seconds, 3),
            "width1_floor_seconds_per_step": round(floor_seconds / steps, 7),
        }
    return out


# -- oracles ----------------------------------------------------------------------------------------------------
def bench_car_oracle(batch: int) -> dict:
    """One batch of blueprints through the campaign's car oracle; the compile of its lattice shape timed apart."""
    from designers import make_designer
    from designers.lbm import simulate
    from flows.parameters import DesignerParameters

    settings = DesignerParameters(name="car").settings()
    designer = make_designer("car", **settings)
    designs = designer.sample(batch, np.random.default_rng(1))
    masks, geometry = designer.rasterise(designs)
    start = time.perf_counter()
    # Two time steps compile the step for this lattice shape, as the oracle's first chunk would.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(designer.threads or previous_threads)
    try:
        simulate(designer.flow_problem(masks, geometry), 2, compile=designer.compile)
    finally:
        torch.set_num_threads(previous_threads)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = designer.oracle(designs)
    seconds = time.perf_counter() - start
    return {"settings": settings, "batch": batch, "seconds": round(seconds, 2),
            "calls_per_second": round(batch / seconds, 3), "seconds_per_blueprint": round(seconds / batch, 3),
            "compile_seconds": round(compile_seconds, 1), "valid": int(result.valid.sum())}


def bench_oracles(car_batch: int) -> dict:
    from molecule_pipeline import bench_oracle  # the pipeline benchmark's measurement, not a copy of it

    out = {"molecule": {**bench_oracle(), "load_average_after": load_average()}}
    if car_batch:
        out["car"] = {**bench_car_oracle(car_batch), "load_average_after": load_average()}
    return out


# -- Prefect orchestration --------------------------------------------------------------------------------------
class IntervalRecorder:
    """Wall-clock intervals (``perf_counter``) of wrapped callables, by label, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self.intervals[label].append((start, end))

        if inspect.isfunction(fn):
            # Prefect binds and validates a flow's or task's parameters by the signature of its ``fn``. Keep it,
            # with its annotations resolved: as strings (``from __future__ import annotations``) they would be
            # looked up in this module, not in the one that defined ``fn``.
            functools.wraps(fn)(timed)
            timed.__signature__ = inspect.signature(fn, eval_str=True)
        return timed

    def covered_seconds(self, *labels: str) -> float:
        return covered_seconds([i for label in labels for i in self.intervals[label]])


def covered_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals: concurrent spans count once."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _prefect_probes():
    """An empty flow and a no-op task with the campaign's cache policy and persisted result (built lazily: Prefect
    must be imported after ``PREFECT_HOME`` is set)."""
    from prefect import flow, task
    from prefect.cache_policies import INPUTS, TASK_SOURCE

    @task(name="noop", cache_policy=INPUTS + TASK_SOURCE, retries=2, retry_delay_seconds=1)
    def noop_task(i: int) -> int:
        return i

    @flow(name="empty")
    def empty_flow() -> None:
        return None

    @flow(name="noop-tasks")
    def noop_tasks(n: int, offset: int) -> dict:
        start = time.perf_counter()
        for i in range(n):
            noop_task(offset + i)
        direct = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for i in range(n):
            noop_task.submit(offset + n + i).result()
        submitted = (time.perf_counter() - start) / n
        return {"direct_call_seconds": direct, "submit_result_seconds": submitted}

    return empty_flow, noop_tasks


def empty_flow_seconds(empty_flow) -> float:
    start = time.perf_counter()
    empty_flow()
    return time.perf_counter() - start


def startup_probe() -> dict:
    """Run in a fresh process: the import of Prefect, then two empty flows (the first starts the ephemeral API)."""
    start = time.perf_counter()
    import advdesign.environment  # noqa: F401
    import prefect  # noqa: F401

    import_seconds = time.perf_counter() - start
    empty_flow, _ = _prefect_probes()
    first = empty_flow_seconds(empty_flow)
    return {"import_seconds": import_seconds, "first_flow_seconds": first,
            "second_flow_seconds": empty_flow_seconds(empty_flow)}


def api_server_processes() -> list:
    """The ephemeral Prefect API (a uvicorn child process of this one)."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True)
            if any("uvicorn" in part for part in p.cmdline())]


def api_server_cpu_seconds() -> float:
    return sum(sum(p.cpu_times()[:2]) for p in api_server_processes())


def prefect_task_runs(flow_run_id, expected: int, timeout_s: float = 30.0) -> tuple[Any, list]:
    """The flow run and its finished task runs, from the API (state events may land a moment after the flow)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                              limit=200)
            finished = [t for t in task_runs if t.state is not None and t.state.is_final()]
            if len(finished) >= expected or time.monotonic() > deadline:
                return client.read_flow_run(flow_run_id), task_runs
            time.sleep(0.5)


def run_campaign_timed(params) -> dict:
    """Run the campaign with the flow, task and hand-over wrappers of this module's docstring; split its wall."""
    import flows.campaign as campaign_module
    import flows.stages as stages
    import tasks.prefect_tasks as prefect_tasks

    recorder = IntervalRecorder()
    campaign_flow = campaign_module.campaign
    task_objects = [prefect_tasks.oracle_batch, prefect_tasks.train_surrogate_task]
    with ExitStack() as patches:
        patches.enter_context(replaced(campaign_flow, "fn", recorder.wrap("flow_body", campaign_flow.fn)))
        for task_object in task_objects:
            patches.enter_context(replaced(task_object, "fn", recorder.wrap("task_body", task_object.fn)))
        for name in ("oracle_in_batches", "train_surrogate_task"):
            patches.enter_context(replaced(stages, name, recorder.wrap("prefect_call", getattr(stages, name))))
        patches.enter_context(replaced(campaign_module, "create_markdown_artifact",
                                       recorder.wrap("prefect_call", campaign_module.create_markdown_artifact)))
        server_cpu_before = api_server_cpu_seconds()
        start = time.perf_counter()
        state = campaign_flow(params, return_state=True)
        wall = time.perf_counter() - start
        server_cpu = api_server_cpu_seconds() - server_cpu_before
    summary = state.result()

    flow_body = recorder.covered_seconds("flow_body")
    prefect_calls = recorder.covered_seconds("prefect_call")
    task_bodies = recorder.covered_seconds("task_body")
    flow_engine = wall - flow_body
    (body_start, body_end), = recorder.intervals["flow_body"]
    task_engine = prefect_calls - task_bodies
    orchestration = flow_engine + task_engine
    n_bodies = len(recorder.intervals["task_body"])

    flow_run, task_runs = prefect_task_runs(state.state_details.flow_run_id, n_bodies)
    body_seconds_sum = sum(end - start for start, end in recorder.intervals["task_body"])
    prefect_running_sum = sum(t.total_run_time.total_seconds() for t in task_runs)
    by_name: dict[str, list[float]] = defaultdict(list)
    for t in task_runs:
        by_name[t.task_key.split("-")[0] if t.task_key else t.name].append(t.total_run_time.total_seconds())
    return {
        "wall_seconds": round(wall, 2),
        "flow_body_seconds": round(flow_body, 2),
        "flow_engine_seconds": round(flow_engine, 3),
        "flow_engine_before_body_seconds": round(body_start - start, 3),
        "flow_engine_after_body_seconds": round(start + wall - body_end, 3),
        "prefect_call_seconds": round(prefect_calls, 2),
        "task_body_covered_seconds": round(task_bodies, 2),
        "task_engine_seconds": round(task_engine, 3),
        "flow_own_code_seconds": round(flow_body - prefect_calls, 2),
        "orchestration_seconds": round(orchestration, 3),
        "orchestration_share": round(orchestration / wall, 4),
        "api_server_cpu_seconds": round(server_cpu, 2),
        "task_runs": n_bodies,
        "oracle_calls": summary["oracle_calls"],
        "prefect_api": {
            "flow_run_total_run_time_seconds": round(flow_run.total_run_time.total_seconds(), 2),
            "task_runs_reported": len(task_runs),
            "task_runs_cache_hits": sum(1 for t in task_runs if t.state and t.state.name == "Cached"),
            "task_total_run_time_sum_seconds": round(prefect_running_sum, 2),
            "task_body_sum_seconds": round(body_seconds_sum, 2),
            "task_running_minus_body_seconds": round(prefect_running_sum - body_seconds_sum, 3),
            "task_runs_by_name": {name: {"count": len(times), "total_run_time_seconds": round(sum(times), 2)}
                                  for name, times in sorted(by_name.items())},
        },
    }


def bench_orchestration(tracking_uri: str, noop_calls: int = 50) -> dict:
    """Needs ``PREFECT_HOME`` set to a fresh folder before Prefect was first imported (``main`` does that)."""
    from flows.parameters import CampaignParameters

    empty_flow, noop_tasks = _prefect_probes()
    cold = empty_flow_seconds(empty_flow)
    warm = min(empty_flow_seconds(empty_flow) for _ in range(3))
    probe = subprocess.run([sys.executable, __file__, "--startup-probe"], env=os.environ.copy(), check=True,
                           capture_output=True, text=True)
    new_process = json.loads(probe.stdout.strip().splitlines()[-1])
    params = CampaignParameters.quick(tracking_uri=tracking_uri, experiment="speed-benchmark-campaign")
    campaign = run_campaign_timed(params)
    # After the campaign, not before: the API server records the no-op flow's hundreds of state events in the
    # background, and the campaign's first API calls would queue behind them (measured: seconds).
    noop = noop_tasks(noop_calls, offset=0)
    n_oracle = campaign["prefect_api"]["task_runs_by_name"].get("oracle_batch", {}).get("count", 0)
    n_direct = campaign["task_runs"] - n_oracle
    estimate = warm + n_oracle * noop["submit_result_seconds"] + n_direct * noop["direct_call_seconds"]
    return {
        "startup": {
            "fresh_home_first_flow_seconds": round(cold, 2),
            "warm_empty_flow_seconds": round(warm, 3),
            "api_startup_seconds": round(cold - warm, 2),
            "new_process_existing_home": {k: round(v, 3) for k, v in new_process.items()},
        },
        "noop_task": {"calls": noop_calls, **{k: round(v, 4) for k, v in noop.items()}},
        "campaign": {"parameters": "CampaignParameters.quick()", **campaign},
        "noop_estimate": {
            "oracle_task_runs": n_oracle, "direct_task_runs": n_direct,
            "orchestration_seconds": round(estimate, 3),
            "note": "empty flow + oracle task runs x submit().result() + other task runs x direct call, "
                    "each at a no-op's cost: tiny inputs and results, so no hashing or pickling of real data",
        },
    }


# -- report -----------------------------------------------------------------------------------------------------
def flat_metrics(report: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of the report as ``a.b.c`` metric names (MLflow metrics)."""
    out: dict[str, float] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def log_to_mlflow(report: dict, tracking_uri: str) -> dict:
    from tasks.tracking import Tracker

    tracker = Tracker(tracking_uri, "speed-benchmark")
    with tracker.run("speed", params={"torch_threads": report["torch_threads"], "sections": report["sections"],
                                      "argv": " ".join(sys.argv[1:])}) as run_id:
        tracker.log_metrics(run_id, flat_metrics(report))
        tracker.log_dict(run_id, report, "speed.json")
    return {"tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "run_id": run_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"what to measure: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine may be shared)")
    parser.add_argument("--batch-sizes", default="1,64,1024")
    parser.add_argument("--steps", type=int, default=100, help="gradient-search steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best counts")
    parser.add_argument("--car-batch", type=int, default=32, help="blueprints in the timed car batch (0: skip)")
    parser.add_argument("--tracking-uri", help="MLflow store for the results (default: a throw-away one)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where the JSON goes ('' : nowhere)")
    parser.add_argument("--startup-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup_probe:  # the child process of the start-up measurement
        print(json.dumps(startup_probe()))
        return
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")

    scratch = tempfile.mkdtemp(prefix="speed-benchmark-")
    # A fresh Prefect home before Prefect is first imported: no campaign task may be a cache hit, and the first
    # flow pays the full start-up of the ephemeral API.
    os.environ["PREFECT_HOME"] = os.path.join(scratch, "prefect")
    import advdesign.environment  # noqa: F401  (the other embedded defaults)

    torch.set_num_threads(args.threads)
    sections = args.sections or list(SECTIONS)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "sections": sections, "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "torch_version": torch.__version__,
                    "load_average_start": load_average()}
    matmul = matmul_flops_per_second()
    report["matmul"] = {"gflop_per_second": round(matmul["flop_per_second"] / 1e9, 2),
                        "gflop_per_second_by_size": matmul["per_size_gflop_per_second"]}
    if "search" in sections:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        report["search"] = {**bench_search(batch_sizes, args.steps, args.repeats),
                            "load_average_after": load_average()}
    if "oracle" in sections:
        report["oracle"] = bench_oracles(args.car_batch)
    if "orchestration" in sections:
        campaign_store = f"sqlite:///{os.path.join(scratch, 'campaign-mlflow.db')}"
        report["orchestration"] = {**bench_orchestration(campaign_store), "load_average_after": load_average()}
    report["load_average_end"] = load_average()
    report["mlflow"] = log_to_mlflow(report, args.tracking_uri or f"sqlite:///{os.path.join(scratch, 'mlflow.db')}")
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
