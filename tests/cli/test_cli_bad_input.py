"""Every bad input to every subcommand fails in one line on stderr, naming the option or the file (and line), with
a nonzero exit and before any work starts (issue 16, part 4). Nothing here labels, trains or starts a flow: each
invocation is refused by the parameters' validation or by the up-front checks (tracking store, database driver,
--json path, model URI, test set)."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest

from advdesign.cli import main
from tasks.training import DEFENSES

#: (argv, a regular expression the one error line must match). ``{name}`` is replaced by the ``bad_files`` path.
BAD_INVOCATIONS = [
    # the command itself
    ([], r"required: COMMAND"),
    (["launch"], r"invalid choice: 'launch'"),
    # names with choices: the error lists them
    (["campaign", "--designer", "boat"], r"unknown designer 'boat'; choose one of molecule, car"),
    (["campaign", "--defenses", "none,madry"], rf"unknown defense 'madry'; choose from {', '.join(DEFENSES)}"),
    (["campaign", "--defenses", ","], r"--defenses: no defense given"),
    (["campaign", "--task-runner", "spark"], r"--task-runner: invalid choice: 'spark'"),
    (["train", "--defense", "madry"], r"unknown defense 'madry'"),
    (["baselines", "--designer", "boat"], r"unknown designer 'boat'"),
    (["tune", "--metric", "accuracy"], r"--metric: unknown metric 'accuracy'"),
    (["evaluate", "--dataset", "cifar"], r"--dataset: .*choose one of digits, mnist"),
    # sizes and ranges: the error names the flag
    (["campaign", "--steps", "0"], r"--steps: Input should be greater than or equal to 1"),
    (["campaign", "--similarity", "2"], r"--similarity: Input should be less than or equal to 1"),
    (["campaign", "--n-labelled", "-5"], r"--n-labelled: Input should be greater than or equal to 10"),
    (["campaign", "--n-seeds", "many"], r"--n-seeds: invalid int value: 'many'"),
    (["campaign", "--hidden", "0"], r"--hidden: every hidden-layer size must be ≥ 1"),
    (["campaign", "--rounds", "0"], r"--rounds: Input should be greater than or equal to 1"),
    (["campaign", "--designer", "car", "--rescorer", "ridge"], r"rescorer ridge ranks molecules by their Morgan "
     r"counts; the car designer has none"),
    (["campaign", "--rescorer", "forest"], r"--rescorer: unknown rescorer 'forest'; choose one of none, ridge"),
    (["train", "--epochs", "0"], r"--epochs: Input should be greater than or equal to 1"),
    (["train", "--lr", "-1"], r"--lr: Input should be greater than 0"),
    (["train", "--batch-size", "0"], r"--batch-size: Input should be greater than or equal to 1"),
    (["baselines", "--n-seeds", "0"], r"--n-seeds: Input should be greater than or equal to 1"),
    (["tune", "--trials", "0"], r"--trials: Input should be greater than or equal to 1"),
    (["tune", "--widths", "0"], r"--widths: '0' is not a list of hidden-layer sizes"),
    (["tune", "--widths", "64,x"], r"--widths: '64,x' is not a list of hidden-layer sizes"),
    (["evaluate", "--torch-threads", "0"], r"--torch-threads: must be ≥ 1"),
    (["ui", "--port", "-1"], r"--port: invalid port -1"),
    (["ui", "--port", "http"], r"--port: invalid port 'http'"),
    # ε out of range
    (["campaign", "--eps", "1e9"], r"--eps: 1000000000.0 is not an L∞ radius in the design box"),
    (["campaign", "--eps", "inf"], r"--eps: inf is not an L∞ radius"),
    (["campaign", "--eps", "-0.1"], r"--eps: Input should be greater than or equal to 0"),
    (["campaign", "--vat-eps", "inf"], r"--vat-eps: must be a finite number"),
    (["campaign", "--search-eps", "0"], r"--search-eps: Input should be greater than 0"),
    (["evaluate", "--eps", "2"], r"ε out of range: \[2.0\]"),
    (["evaluate", "--eps", "0"], r"ε out of range"),
    # options one designer does not take
    (["train", "--designer", "car", "--similarity", "0.5"], r"--similarity is a molecule option"),
    # files: missing, a folder, empty, binary (its bytes not echoed), not UTF-8 (the line named)
    (["campaign", "--seeds", "{missing}"], r"seeds file .*missing.smi not found"),
    (["campaign", "--seeds", "{folder}"], r"seeds file .* is not a file"),
    (["campaign", "--seeds", "{empty}"], r"seeds file .*empty.smi has no usable seed"),
    (["campaign", "--seeds", "{comments}"], r"seeds file .*comments.smi has no usable seed"),
    (["campaign", "--seeds", "{all_invalid}"], r"has no usable seed \(2 bad lines; first: .*all_invalid.smi:1: invalid SMILES"),
    (["baselines", "--seeds", "{all_invalid}"], r"has no usable seed"),
    (["campaign", "--seeds", "{binary}"], r"seeds file .*binary.smi is binary"),
    (["train", "--seeds", "{latin1}"], r"seeds file .*latin1.smi:2: not UTF-8 text"),
    (["evaluate", "--model", "models:/x/1"], r"--model needs --test-set"),
    (["evaluate", "--model", "models:/x/1", "--test-set", "{missing}"], r"--test-set .*missing.smi: file not found"),
    (["evaluate", "--test-set", "{empty}"], r"--test-set is read only with --model"),
    # the --json path: checked before any work
    (["campaign", "--json", "{folder}"], r"--json .*: is a folder"),
    (["train", "--json", "/proc/advdesign-no-such-folder/out.json"], r"--json .*: cannot write there"),
    # tracking stores and databases: scheme, driver (with the pip hint), reachability, folder
    (["campaign", "--tracking-uri", "foo://bar"], r"'foo://bar': unsupported scheme 'foo'"),
    (["train", "--tracking-uri", "mlflow.db"], r"use sqlite:///PATH or http\(s\)://HOST"),
    (["campaign", "--tracking-uri", "http://127.0.0.1:9"], r"MLflow tracking server http://127.0.0.1:9 is unreachable"),
    (["campaign", "--tracking-uri", "postgresql+psycopg2://u:secret@127.0.0.1:9/db"],
     r"postgresql\+psycopg2://u:\*\*\*@127.0.0.1:9/db: (the database driver 'psycopg2' is not installed "
     r"\(pip install 'psycopg2-binary'\)|database server 127.0.0.1:9 is unreachable)"),
    (["train", "--tracking-uri", "postgresql+psycopg://u@127.0.0.1:9/db"],  # a dead port: one try, not 2 min
     r"postgresql\+psycopg://u@127.0.0.1:9/db: (database server 127.0.0.1:9 is unreachable|the database driver)"),
    (["baselines", "--tracking-uri", "sqlite:////no-such-folder/mlflow.db"], r"folder /no-such-folder does not exist"),
    # a read-only folder for real (not writable even by root): refused up front, not after 100 s of retries
    (["campaign", "--tracking-uri", "sqlite:////proc/sys/mlflow.db"], r"mlflow.db: /proc/sys is not writable"),
    (["campaign", "--tracking-uri", "postgresql://u:secret@127.0.0.1:9/db"],  # SQLAlchemy's default driver
     r"postgresql://u:\*\*\*@127.0.0.1:9/db: (database server 127.0.0.1:9 is unreachable|the database driver)"),
    (["evaluate", "--tracking-uri", "foo://bar"], r"unsupported scheme 'foo'"),
    (["ui", "--tracking-uri", "foo://bar"], r"unsupported scheme 'foo'"),
    (["tune", "--storage", "bad://x"], r"--storage \(Optuna\) 'bad://x': unsupported scheme 'bad'"),
    # model URIs that name nothing
    (["design", "--quick"], r"required: --model"),
    (["design", "--quick", "--model", "models:/no-such-model@none"], r"cannot load model 'models:/no-such-model@none'"),
    (["evaluate", "--model", "models:/no-such-model/1", "--test-set", "{empty}"], r"no-such-model"),
]


@pytest.fixture
def bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "empty.smi").write_text("")
    (tmp_path / "comments.smi").write_text("# seeds\n\n   \n")
    (tmp_path / "binary.smi").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    (tmp_path / "latin1.smi").write_bytes("CCO\nC(=O)Ö\n".encode("latin-1"))
    (tmp_path / "all_invalid.smi").write_text("C1CC\n# a comment\nnot-a-smiles\n")
    (tmp_path / "folder").mkdir()
    return {name: str(tmp_path / (name if name == "folder" else f"{name}.smi"))
            for name in ("missing", "folder", "empty", "comments", "binary", "latin1", "all_invalid")}


@pytest.mark.parametrize("argv, expected", BAD_INVOCATIONS, ids=[" ".join(a) or "(none)" for a, _ in BAD_INVOCATIONS])
def test_every_bad_input_is_one_line_naming_the_culprit(argv, expected, bad_files, capsys):
    argv = [part.format(**bad_files) for part in argv]
    started = time.monotonic()
    code = main(argv)
    took = time.monotonic() - started
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "usage:" not in captured.out + err
    assert re.search(expected, err), err
    assert err.startswith("advdesign") and ": error: " in err
    assert len(err) < 400  # no file contents, no library dump
    assert took < 20, f"{took:.0f} s"  # no retries (a first import of a heavy module may take a few seconds)


def test_a_refused_json_path_leaves_no_file_and_a_good_one_is_not_created_early(tmp_path):
    from advdesign.report import check_json_path

    target = tmp_path / "deep" / "out.json"
    check_json_path(str(target))
    assert not target.exists()  # checked, not left behind before the work has a result
    check_json_path("-")


def test_a_read_only_store_is_refused_up_front(tmp_path, monkeypatch):
    """(Root may write anywhere, so the read-only folder is what ``os.access`` reports, as for a normal user.)"""
    from tasks import tracking

    real_access = os.access
    monkeypatch.setattr(tracking.os, "access", lambda path, mode: False if str(path) == str(tmp_path)
                        else real_access(path, mode))
    with pytest.raises(tracking.TrackingUnavailable, match="is not writable"):
        tracking.check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_duplicate_seed_lines_are_warned_about_once_and_still_accepted(tmp_path, caplog):
    from flows.parameters import DataParameters

    seeds = tmp_path / "dup.smi"
    seeds.write_text("CCO\nc1ccccc1\nCCO\n# a comment\nCCO\n")
    with caplog.at_level(logging.WARNING, logger="advdesign"):
        assert DataParameters(seeds_file=str(seeds)).seeds_file == str(seeds)
        DataParameters(seeds_file=str(seeds))
    warnings = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert warnings == [f"seeds file {seeds}: 2 duplicate lines (line 3 repeats line 1; line 5 repeats line 1)"]


def test_an_implausible_search_radius_is_warned_about(caplog):
    from flows.parameters import SearchParameters

    with caplog.at_level(logging.WARNING, logger="advdesign"):
        assert SearchParameters(eps=1e9).eps == 1e9
    assert any("holds the whole design box" in r.getMessage() for r in caplog.records)


def test_dashboard_opens_tunes_storage_on_loopback_or_fails_in_one_line(tmp_path, monkeypatch, capsys):
    from advdesign import cli

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["dashboard", "--tracking-uri", store]) == 2  # no studies yet
    assert "no Optuna studies in sqlite:///" in capsys.readouterr().err
    assert main(["dashboard", "--storage", "bad://x"]) == 2
    assert "unsupported scheme 'bad'" in capsys.readouterr().err
    (tmp_path / "optuna.db").write_bytes(b"")
    started = []
    monkeypatch.setattr(cli.os, "execv", lambda program, argv: started.append(argv))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "optuna-dashboard").write_text("")
    monkeypatch.setattr(cli.sys, "executable", str(fake / "python"))
    assert main(["dashboard", "--tracking-uri", store, "--port", "8123"]) == 0
    assert started == [[str(fake / "optuna-dashboard"), f"sqlite:///{tmp_path / 'optuna.db'}", "--host", "127.0.0.1",
                        "--port", "8123"]]
    (fake / "optuna-dashboard").unlink()
    assert main(["dashboard", "--tracking-uri", store]) == 2
    assert "pip install optuna-dashboard" in capsys.readouterr().err


def test_a_long_bad_seed_line_is_named_not_copied_whole(tmp_path):
    from designers import make_designer
    from tasks.pure_stages import read_seed_file

    seeds = tmp_path / "seeds.smi"
    seeds.write_text("CCO\n" + "C1(" * 2000 + "\n")
    designs, errors = read_seed_file(make_designer("molecule"), str(seeds))
    assert len(designs) == 1 and len(errors) == 1
    assert errors[0].startswith(f"{seeds}:2: ") and len(errors[0]) < 250 + len(str(seeds))


@pytest.fixture
def listener():
    """A loopback port that accepts connections and answers each with ``reply`` after ``delay_s`` (``None``: never
    answers); its ``port``."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    settings = {"reply": None, "delay_s": 0.0}
    stop = threading.Event()

    def serve():
        held = []
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            try:
                if not connection.recv(65536) or settings["reply"] is None:
                    continue  # a bare connect (the port probe), or a port that never answers
                time.sleep(settings["delay_s"])
                connection.sendall(settings["reply"])
                connection.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings["port"] = server.getsockname()[1]
    yield settings
    stop.set()
    server.close()


def test_a_database_port_where_something_else_answers_fails_in_one_line_at_once(listener, capsys):
    """Not PostgreSQL behind the port: one line from one connection, not MLflow's minutes of retries."""
    import time

    listener["reply"] = b"HTTP/1.0 400 Bad Request\r\n\r\n"
    started = time.monotonic()
    code = main(["train", "--tracking-uri", f"postgresql+psycopg://u:secret@127.0.0.1:{listener['port']}/db"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.search(rf"postgresql\+psycopg://u:\*\*\*@127.0.0.1:{listener['port']}/db: cannot connect: ", err), err
    assert "secret" not in err and time.monotonic() - started < 20


def test_a_slow_tracking_server_is_waited_for_and_a_silent_one_named(listener):
    """A loaded server (eight campaigns starting at once) answers late: that is not unreachable. A port that
    accepts and never answers fails after the answer timeout, in one line."""
    from tasks import tracking

    listener["reply"], listener["delay_s"] = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK", 1.5
    tracking.check_reachable(f"http://127.0.0.1:{listener['port']}", timeout_s=0.5)  # slower than the connect timeout
    listener["reply"] = None
    with pytest.raises(tracking.TrackingUnavailable, match=r"is unreachable: no answer in 1 s$"):
        tracking.check_reachable(f"http://127.0.0.1:{listener['port']}", timeout_s=0.5, answer_timeout_s=1)
