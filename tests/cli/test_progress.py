"""Progress at a terminal, silence elsewhere (issue 14): the labelling stage keeps its bar as a line, training shows
its epochs, the ``advdesign`` logger's stage lines appear; nothing of it without a terminal or in tests."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from prefect import flow

from designers.toy import Sphere
from flows.parameters import DataParameters
from flows.stages import prepare_data
from tasks import progress
from tasks.pure_stages import train_surrogate
from tasks.training import Defense, TrainingConfig

ROOT = Path(__file__).resolve().parents[2]


@flow(name="progress-probe")
def _label_and_train() -> None:
    data = prepare_data(Sphere(), DataParameters(n_labelled=40, n_seed_pool=20, n_unlabelled=0, n_seeds=2,
                                                 oracle_batch_size=15))
    logging.getLogger("advdesign").info("a stage line")
    train_surrogate((4,), (8,), TrainingConfig(epochs=3, batch_size=16, defense=Defense("fgsm")), data.x_train,
                    data.y_train, data.x_val, data.y_val, None)


@pytest.fixture
def shown():
    progress.enable()
    yield
    progress.enable(False)


def test_the_stages_show_their_progress_when_enabled(prefect_api, single_torch_thread, shown, capsys):
    _label_and_train()
    err = capsys.readouterr().err
    assert "label 60 designs: 100%" in err and "60/60" in err  # the labelling bar, finished
    assert "train fgsm" in err and "3/3" in err and "validation loss" in err  # the epochs
    assert "a stage line" in err


def test_nothing_is_shown_unless_enabled(prefect_api, single_torch_thread, capsys):
    _label_and_train()
    err = capsys.readouterr().err
    assert "label 60" not in err and "train fgsm" not in err and "a stage line" not in err


def _progress_for_terminal(terminal: bool, **env: str) -> str:
    """What the command line decides in a fresh process whose stdout and stderr are a terminal (or pipes)."""
    command = [sys.executable, "-c", "import advdesign.cli as c; print(c.progress_for_terminal())"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    if not terminal:
        return subprocess.run(command, capture_output=True, text=True, env=environment, check=True).stdout.strip()
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdout=follower, stderr=follower, env=environment) as process:
        os.close(follower)
        process.wait(timeout=60)
        out = b""
        try:
            while chunk := os.read(leader, 1024):
                out += chunk
        except OSError:  # the terminal's other end closed: all read
            pass
    os.close(leader)
    return out.decode().strip()


def test_the_command_line_shows_progress_only_at_a_terminal():
    assert _progress_for_terminal(terminal=True) == "True"
    assert _progress_for_terminal(terminal=False) == "False"
    assert _progress_for_terminal(terminal=True, ADVDESIGN_PROGRESS="0") == "False"


def test_the_design_loop_shows_its_search_budget_as_one_bar(prefect_api, single_torch_thread, shown, tmp_path,
                                                             capsys):
    from advdesign.cli import main

    code = main(["campaign", "--quick", "--defenses", "none", "--n-labelled", "300", "--n-unlabelled", "0",
                 "--n-pool", "60", "--n-seeds", "3", "--epochs", "2", "--calls-per-seed", "4",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--json", str(tmp_path / "out.json")])
    assert code == 0
    err = capsys.readouterr().err
    assert "none: search budget" in err and "/12" in err  # 3 seeds × 4 calls, filled round by round
    assert "none round 1:" in err  # and a line per round above it
