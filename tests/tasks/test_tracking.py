"""The model store and MLflow hygiene (tasks/tracking.py): models load without running code, one registered
version per trained model, aliases move only on publish, concurrent start-up on a fresh store, orphaned runs."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from tasks.surrogate import WEIGHTS_FILE, Surrogate
from tasks.tracking import (EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, HOST_TAG, KILLED_REASON_TAG, MODEL_VERSION_TAG,
                            PID_TAG, PROCESS_START_TAG, Tracker, load_model, resolve_model_uri,
                            version_model_id)

EXPERIMENT = "tracking-tests"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One store for the module (a fresh SQLite schema costs seconds); tests use their own model names."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tracker(uri):
    return Tracker(uri, EXPERIMENT)


def _surrogate(seed: int = 0) -> tuple[Surrogate, torch.Tensor]:
    torch.manual_seed(seed)
    return Surrogate((6,), hidden=(8,)), torch.rand(4, 6)


def _versions(tracker: Tracker, name: str) -> list[str]:
    return sorted(str(v.version) for v in tracker.client.search_model_versions(f"name = '{name}'"))


def _weights_path(tracker: Tracker, model_uri: str) -> Path:
    """Where a registered version's weights file lives in the local artifact store."""
    name, version = model_uri.removeprefix("models:/").split("/")
    model_id = version_model_id(tracker.client.get_model_version(name, version))
    location = tracker.client.get_logged_model(model_id).artifact_location
    return Path(unquote(urlparse(location).path)) / WEIGHTS_FILE


class _Payload:
    """A pickle that, when unpickled, creates a marker file: what a crafted model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_model_round_trips_as_architecture_and_weights(tracker, uri, recwarn):
    model, x = _surrogate()
    with tracker.run("round-trip") as run_id:
        model_uri = tracker.log_model(run_id, model, "surrogate", x[:2].numpy(), registered_name="t-round-trip")
    assert model_uri == "models:/t-round-trip/1"
    assert not [w for w in recwarn if "pickle" in str(w.message).lower()]
    loaded = load_model(model_uri, uri)
    assert type(loaded) is Surrogate and torch.equal(loaded(x), model.eval()(x))
    assert tracker.client.get_registered_model("t-round-trip").description  # the registry says what it is
    assert tracker.client.get_run(run_id).data.tags[MODEL_VERSION_TAG] == "1"


def test_a_crafted_pickle_in_place_of_the_weights_is_refused_without_running(tracker, uri, tmp_path):
    model, x = _surrogate()
    with tracker.run("crafted") as run_id:
        model_uri = tracker.log_model(run_id, model, "surrogate", x[:2].numpy(), registered_name="t-crafted")
    marker = tmp_path / "pwned"
    weights = _weights_path(tracker, model_uri)
    assert weights.is_file()
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    assert not marker.exists()
    with pytest.raises(ValueError) as error:
        load_model(model_uri, uri)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and "t-crafted" in message and "not a plain tensor file" in message
    assert not marker.exists()
    # The planted file really is an exploit: plain pickle.load would have run it.
    pickle.loads(weights.read_bytes())
    assert marker.exists()


def test_a_cached_rerun_registers_no_new_version(tracker):
    model, x = _surrogate(1)
    uris = []
    for attempt in range(2):  # the same trained model (as a cached training task returns it), logged twice
        with tracker.run(f"train-{attempt}") as run_id:
            uris.append(tracker.log_model(run_id, model, "surrogate", x[:2].numpy(), registered_name="t-cached",
                                          alias="fgsm"))
    assert uris == ["models:/t-cached/1", "models:/t-cached/1"]
    assert _versions(tracker, "t-cached") == ["1"]
    retrained, _ = _surrogate(2)  # different weights: a new version
    with tracker.run("train-new") as run_id:
        assert tracker.log_model(run_id, retrained, "surrogate", x[:2].numpy(), registered_name="t-cached") \
            == "models:/t-cached/2"
    assert _versions(tracker, "t-cached") == ["1", "2"]


def test_an_alias_moves_only_when_published(tracker, uri):
    first, x = _surrogate(3)
    second, _ = _surrogate(4)
    with tracker.run("published") as run_id:
        published = tracker.log_model(run_id, first, "surrogate", x[:2].numpy(), registered_name="t-alias",
                                      alias="fgsm", publish=True)
    with tracker.run("quick") as run_id:
        quick = tracker.log_model(run_id, second, "surrogate", x[:2].numpy(), registered_name="t-alias", alias="fgsm")
    assert (published, quick) == ("models:/t-alias/1", "models:/t-alias/2")
    assert str(tracker.client.get_model_version_by_alias("t-alias", "fgsm").version) == "1"
    assert resolve_model_uri("models:/t-alias@fgsm", uri) == "models:/t-alias/1"  # summaries report the version
    with tracker.run("published-again") as run_id:
        tracker.log_model(run_id, second, "surrogate", x[:2].numpy(), registered_name="t-alias", alias="fgsm",
                          publish=True)
    assert str(tracker.client.get_model_version_by_alias("t-alias", "fgsm").version) == "2"
    assert _versions(tracker, "t-alias") == ["1", "2"]


def test_runs_carry_source_tags_and_the_experiment_opens_in_model_training_mode(tracker):
    with tracker.run("tags") as run_id:
        pass
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["mlflow.user"] and tags["mlflow.source.name"]
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags[PID_TAG] == str(os.getpid()) and tags[HOST_TAG]
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def _start_tracker(uri: str) -> str:
    return Tracker(uri, "concurrent").experiment_id


def test_concurrent_trackers_on_a_fresh_store_all_start(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_start_tracker, [uri] * 4)
    assert len(set(ids)) == 1


def test_a_run_left_running_by_a_dead_process_is_marked_killed(tracker, uri):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tracker.start_run("orphan", tags={PID_TAG: str(dead.pid), PROCESS_START_TAG: "0"})
    # The dead process was writing a model: MLflow leaves it PENDING.
    pending = tracker.client.create_logged_model(tracker.experiment_id, name="half-written", source_run_id=orphan)
    alive = tracker.start_run("alive")  # this process: still running
    Tracker(uri, EXPERIMENT)  # start-up reaps
    run = tracker.client.get_run(orphan)
    assert run.info.status == "KILLED" and str(dead.pid) in run.data.tags[KILLED_REASON_TAG]
    assert tracker.client.get_run(alive).info.status == "RUNNING"
    assert str(tracker.client.get_logged_model(pending.model_id).status) in ("FAILED", "LoggedModelStatus.FAILED")
    tracker.end_run(alive)


def test_sigterm_ends_the_open_runs_as_killed(uri, tmp_path):
    started = tmp_path / "started"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import advdesign.environment
        from tasks.tracking import Tracker
        tracker = Tracker({uri!r}, {EXPERIMENT!r})
        parent = tracker.start_run("campaign")
        try:
            with tracker.run("child", parent_run_id=parent) as child:
                open({str(started)!r}, "w").write(parent + " " + child)
                time.sleep(60)
        finally:
            tracker.end_run(parent)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(600):
        if started.exists() and started.read_text().count(" ") == 1:
            break
        assert process.poll() is None, "the campaign script died before starting its runs"
        import time
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    tracker = Tracker(uri, EXPERIMENT)
    for run_id in started.read_text().split():
        run = tracker.client.get_run(run_id)
        assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[KILLED_REASON_TAG]


def test_only_the_params_that_apply_to_the_designer_and_defense_are_logged():
    from flows.campaign import flat_params
    from flows.parameters import CampaignParameters
    from tasks.tracking import applicable_params
    from tasks.training import Defense, TrainingConfig

    plain = applicable_params(TrainingConfig(defense=Defense(name="none")).as_params(), "none")
    assert plain["defense"] == "none" and not [k for k in plain if k.startswith("defense.")]
    vat = applicable_params({**TrainingConfig(defense=Defense(name="vat")).as_params(), "n_unlabelled": 5}, "vat")
    assert {"defense.vat_eps", "n_unlabelled"} <= set(vat) and "defense.eps" not in vat
    plain_campaign = CampaignParameters.defaults("molecule", quick=True).model_copy(update={"defenses": ("none",)})
    molecule = flat_params(plain_campaign)
    assert "designer.objective" in molecule and "designer.resolution" not in molecule
    assert not {"surrogate.eps", "surrogate.vat_eps", "data.n_unlabelled"} & set(molecule)
    car = flat_params(CampaignParameters.defaults("car", quick=True))
    assert "designer.resolution" in car and "designer.similarity_threshold" not in car
    assert car["designer.objective"] == "top_speed"


def test_a_trained_surrogates_run_shows_its_data_as_mlflow_dataset_inputs(tracker):
    from flows.stages import log_data_inputs
    from tasks.pure_stages import DesignData

    data = DesignData(x_train=torch.rand(8, 3), y_train=torch.rand(8), x_val=torch.rand(2, 3), y_val=torch.rand(2),
                      x_unlabelled=torch.rand(5, 3), pool=[], pool_scores=torch.rand(0).numpy(),
                      data_id="0123456789abcdef", oracle_calls=10)

    class Designer:
        name = "molecule"

    contexts = {}
    for defense in ("none", "vat"):
        with tracker.run(f"inputs-{defense}") as run_id:
            log_data_inputs(tracker, run_id, Designer(), data, defense)
        inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
        contexts[defense] = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts["none"]) == {"training", "validation"}
    assert set(contexts["vat"]) == {"training", "validation", "unlabelled"}
    training = contexts["none"]["training"]
    assert training.digest == "0123456789abcdef" and '"num_rows": 8' in training.profile
