"""`--task-runner dask`: the oracle batches run in Dask worker processes (a LocalCluster of 2) and give exactly what
the thread runner gives. Real Prefect, real LocalCluster, real oracles.

Each Dask run comes first on designs nothing else in the session labels (its own rng seed), so nothing is served
from Prefect's cache; the thread run after it refreshes the cache, so it computes everything again in-process.
"""

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

from advdesign.cli import main, task_runner
from designers import make_designer
from tasks.prefect_tasks import oracle_in_batches

pytest.importorskip("prefect_dask")

SMOKE_CAR = {"resolution": "smoke", "compile": False, "threads": 1}


@flow(name="label-cars")
def label_cars(keys: list[str], batch_size: int) -> dict:
    """Label car keys on whatever task runner the flow is given; report how many oracle calls this process made."""
    designer = make_designer("car", **SMOKE_CAR)
    result = oracle_in_batches(designer, [designer.parse(k) for k in keys], batch_size)
    return {"scores": result.scores.tolist(), "failures": result.failures,
            "C_D": result.extras["C_D"].tolist(), "local_oracle_calls": designer.oracle_calls}


def test_car_oracle_batches_on_dask_equal_the_thread_runner(prefect_api):
    designer = make_designer("car", **SMOKE_CAR)
    keys = [designer.key(d) for d in designer.sample(4, np.random.default_rng(2024))]
    on_dask = label_cars.with_options(task_runner=task_runner("dask", None))(keys, 2)
    with temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True}):
        on_threads = label_cars.with_options(task_runner=task_runner("threads", None))(keys, 2)
    # Two batches on two worker processes: the designer was pickled there, this process scored nothing.
    assert on_dask["local_oracle_calls"] == 0
    assert on_threads["local_oracle_calls"] == 4  # the same object scored everything in this process
    assert on_dask["failures"] == on_threads["failures"] == [None] * 4
    # Float32 flow with fastmath: CI measured 5e-6 relative between a worker process and this one (the same
    # designs, kernel and steps; the rounding of a fresh process differed), so equal means equal to 1e-4.
    np.testing.assert_allclose(on_dask["scores"], on_threads["scores"], rtol=1e-4)
    np.testing.assert_allclose(on_dask["C_D"], on_threads["C_D"], rtol=1e-4)
    assert 40 < min(on_dask["scores"]) and max(on_dask["scores"]) < 200  # km/h, a 2-D flow's top speeds


TINY = ["--quick", "--n-labelled", "400", "--n-unlabelled", "200", "--n-pool", "100", "--n-seeds", "6",
        "--epochs", "3", "--steps", "15", "--budget", "30", "--calls-per-seed", "5", "--rng-seed", "11",
        "--defenses", "none,fgsm"]


def test_molecule_campaign_on_dask_equals_the_thread_runner(tmp_path, prefect_api):
    # 500 molecules in one oracle batch is above chem's parallel threshold: in a (daemonic) Dask worker it must
    # score in-process instead of starting a process pool, which multiprocessing forbids there.
    runs = {}
    for runner in ("dask", "threads"):
        path = tmp_path / f"{runner}.json"
        args = ["campaign", *TINY, "--task-runner", runner, "--tracking-uri", f"sqlite:///{tmp_path / runner}.db",
                "--json", str(path)]
        if runner == "threads":
            with temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True}):
                assert main(args) == 0
        else:
            assert main(args) == 0
        runs[runner] = json.loads(path.read_text())
    dask, threads = runs["dask"], runs["threads"]
    for defense in ("none", "fgsm"):
        a, b = dask["defenses"][defense], threads["defenses"][defense]
        # The labels: data_id fingerprints every labelled design's key and its oracle score, so equal ids mean
        # the Dask workers scored all 500 molecules exactly as the in-process pool did. (Models are not compared:
        # retraining is not bitwise reproducible across runs, which has nothing to do with the runner.)
        ids = [MlflowClient(run["mlflow"]["tracking_uri"]).get_run(r["run_id"]).data.params["data_id"]
               for run, r in ((dask, a), (threads, b))]
        assert ids[0] == ids[1], defense
        assert a["n_seeds"] == b["n_seeds"] == 6
