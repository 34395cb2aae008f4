"""A killed `tune` leaves no trial RUNNING for the next run to count (issue 16), and a study names its metric so
optuna-dashboard labels its axes (issue 14)."""

from __future__ import annotations

import socket
import subprocess

import optuna

from flows.tune import TuneParameters, fail_orphan_trials, mark_trial_process, open_study


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_dead_processs_running_trial_is_failed_and_live_or_foreign_ones_are_left(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s")
    dead, live, foreign, old = (study.ask() for _ in range(4))
    for trial, pid, host in ((dead, _dead_pid(), socket.gethostname()), (foreign, 1, "another-host")):
        trial.set_user_attr("pid", str(pid))
        trial.set_user_attr("host", host)
    mark_trial_process(live)  # this process: alive
    assert fail_orphan_trials(study) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert "ended while the trial ran" in study.trials[dead.number].user_attrs["killed_reason"]
    for trial in (live, foreign, old):  # alive, another machine's, or without a recorded process
        assert states[trial.number] == optuna.trial.TrialState.RUNNING


def test_open_study_names_the_metric_and_reaps_orphans(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = TuneParameters.quick("molecule", study_name="named", objective="validation_mae")
    study, _ = open_study(params, storage)
    orphan = study.ask()
    orphan.set_user_attr("pid", str(_dead_pid()))
    orphan.set_user_attr("host", socket.gethostname())
    study, before = open_study(params, storage)
    assert study.metric_names == ["validation_mae"]
    assert before == 1 and study.trials[0].state == optuna.trial.TrialState.FAIL
