import os
import sys
import tempfile

# Each test session gets its own Prefect home and MLflow store: tests never touch the project's own.
_HOME = tempfile.mkdtemp(prefix="advdesign-tests-")
os.environ["PREFECT_HOME"] = os.path.join(_HOME, "prefect")
os.environ.pop("MLFLOW_TRACKING_URI", None)

import advdesign.environment  # noqa: E402,F401

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api():
    """A real, temporary Prefect API for flow tests (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    # A quiet machine starts it in ~10 s; one loaded by benchmarks beside the tests took over 90 s.
    with prefect_test_harness(server_startup_timeout=240):
        yield


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models train several times faster on one intra-op thread than on two contended ones."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
