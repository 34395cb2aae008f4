"""`advdesign ui` prints a link that opens MLflow's model-training view, not the GenAI view MLflow 3.17 opens a
fresh browser in (issue 14)."""

from __future__ import annotations

import os

import pytest

from advdesign import cli


def test_the_ui_link_asks_for_the_model_training_view():
    assert cli.ui_url(5000) == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert cli.ui_url(5123).startswith("http://127.0.0.1:5123/#/")


def test_advdesign_ui_prints_the_model_training_link_before_starting_the_server(tmp_path, monkeypatch, capsys):
    """The real command up to the point it replaces itself with `mlflow ui` (that exec is stopped here, so no
    server starts): the printed line is the link, on the chosen port, for the chosen store."""
    started = []

    class Started(Exception):
        pass

    def exec_instead(program, argv):
        started.append(argv)
        raise Started

    monkeypatch.setattr(os, "execv", exec_instead)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(Started):
        cli.main(["ui", "--port", "5123", "--tracking-uri", uri])
    line = capsys.readouterr().out.strip()
    assert line == f"MLflow UI on http://127.0.0.1:5123/#/experiments?workflowType=machine_learning for {uri}"
    assert started and started[0][started[0].index("--port") + 1] == "5123"
    assert started[0][started[0].index("--backend-store-uri") + 1] == uri
