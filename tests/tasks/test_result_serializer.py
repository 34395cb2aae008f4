"""Prefect's cached results of the data tasks (oracle labels, trained surrogates, ensembles) are stored as data and
read back without running anything from the store (issue 16)."""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from designers.base import OracleResult
from tasks.ensemble import Ensemble
from tasks.result_serializer import DATA_SERIALIZER, UnsafeResult
from tasks.surrogate import Surrogate
from tasks.training import EpochRecord, TrainingHistory


class WritesACanary:
    """A pickle that creates a file when unpickled: proof that code from the store ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_labels_models_and_histories_round_trip_as_json_data():
    labels = OracleResult(np.array([1.5, np.nan]), ["", "invalid SMILES"], {"qed": np.array([0.1, 0.2])})
    model = Surrogate((3, 4), (8,))
    model.set_target_scale(torch.randn(20) * 3 + 1)
    model.eval()
    history = TrainingHistory([EpochRecord(1, 0.5, 0.4)], coms_alpha=[1.0], coms_gap=[0.2])
    ensemble = Ensemble([model, Surrogate((3, 4), (8,))]).eval()
    blob = DATA_SERIALIZER.dumps((labels, (model, history), (ensemble, [history])))
    assert json.loads(blob)["format"] == "advdesign-data/1"
    back, (model2, history2), (ensemble2, histories) = DATA_SERIALIZER.loads(blob)
    np.testing.assert_array_equal(back.scores, labels.scores)
    assert back.failures == labels.failures and back.extras["qed"].tolist() == [0.1, 0.2]
    x = torch.rand(5, 3, 4)
    assert torch.equal(model2(x), model(x)) and not model2.training
    assert history2 == history and histories == [history]
    assert torch.equal(ensemble2(x), ensemble(x))


def test_a_pickle_or_a_type_off_the_allow_list_is_refused_and_runs_nothing(tmp_path):
    canary = tmp_path / "canary"
    with pytest.raises(UnsafeResult, match="not JSON data"):
        DATA_SERIALIZER.loads(pickle.dumps(WritesACanary(canary)))
    forged = {"format": "advdesign-data/1", "value": {"__dataclass__": "Popen", "fields": {"args": "true"}}}
    with pytest.raises(UnsafeResult, match="not on the allow-list"):
        DATA_SERIALIZER.loads(json.dumps(forged).encode())
    with pytest.raises(TypeError, match="cannot be stored as data"):
        DATA_SERIALIZER.dumps(WritesACanary(canary))
    assert not canary.exists()


class FakeDesigner:
    name = "fake"

    def oracle(self, designs):
        return OracleResult(np.array([float(len(d)) for d in designs]), [""] * len(designs), {})


def test_the_oracle_cache_is_data_and_a_record_rewritten_to_a_pickle_is_recomputed_not_run(prefect_api, tmp_path):
    from prefect import flow
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

    from tasks.prefect_tasks import oracle_batch

    designs = [f"design-{uuid.uuid4().hex[:8]}", "bb", "ccc"]  # a fresh cache key
    label = oracle_batch.with_options(cache_result_in_memory=False, retries=0)

    @flow
    def labels():
        return label(FakeDesigner(), "fake:{}", designs, return_state=True)

    first = labels()
    assert first.is_completed() and first.name == "Completed"
    storage = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())
    records = [p for p in storage.iterdir() if p.is_file() and b'"advdesign-data"' in p.read_bytes()
               and b"OracleResult" in p.read_bytes()]
    record_path = max(records, key=lambda p: p.stat().st_mtime)  # the one just written
    record = json.loads(record_path.read_text())
    assert record["metadata"]["serializer"]["type"] == "advdesign-data"
    assert json.loads(record["result"])["value"]["__dataclass__"] == "OracleResult"

    second = labels()
    assert second.name == "Cached" and second.result().scores.tolist() == first.result().scores.tolist()

    canary = tmp_path / "canary"
    record["metadata"]["serializer"] = {"type": "pickle", "picklelib": "pickle"}
    record["result"] = base64.b64encode(pickle.dumps(WritesACanary(canary))).decode()
    record_path.write_text(json.dumps(record))
    third = labels()
    assert not canary.exists()  # nothing from the store ran
    assert third.name == "Completed" and third.result().scores.tolist() == first.result().scores.tolist()
    assert json.loads(record_path.read_text())["metadata"]["serializer"]["type"] == "advdesign-data"
