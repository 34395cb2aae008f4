"""Ctrl-C and SIGTERM end an ``advdesign`` command in one line, promptly, with nothing left running.

Left to the libraries, a signal in the middle of a campaign printed a traceback from every forked oracle worker,
Prefect's crash reports and, when the whole process group was signalled (Ctrl-C, ``kill -- -PGID``, a container
stop), a minute of retries and tracebacks against the ephemeral Prefect server the same signal had just stopped;
the process then waited for its task threads to finish their work. Here the command line's handler instead stops
the child processes (oracle pools, Dask workers), marks the open MLflow runs KILLED (the models they were still
writing FAILED), this process's running Optuna trials FAIL and its Prefect flow runs Crashed (each best effort: the
next run reaps what is left, see :mod:`flows.orphans`), stops the ephemeral Prefect server, prints one line and
exits with 128 + the signal number, as a shell reports a killed command.

Only the command line opts in (:func:`exit_cleanly`): a library caller or a test keeps Python's and Prefect's own
behaviour (KeyboardInterrupt, Prefect's ``TerminationSignal`` and cancellation by a worker).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: What the handler says, by signal.
REASONS = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}
_PROGRAM: str | None = None


def _on_signal(signum: int, frame: Any) -> None:
    for sig in REASONS:  # a second Ctrl-C must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    # From here on nothing else reaches the terminal: threads whose work is being torn down would log or print.
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
    reason = REASONS.get(signum, f"signal {signum}")
    done = []
    # The runs first, while the ephemeral Prefect server (a child process) still answers.
    if tracking := sys.modules.get("tasks.tracking"):
        marked = tracking.kill_open_runs(reason)
        done.append(f"{marked} MLflow run{'s' * (marked != 1)} marked KILLED" if marked else "")
    if tune := sys.modules.get("flows.tune"):
        failed = tune.fail_running_trials(reason)
        done.append(f"{failed} Optuna trial{'s' * (failed != 1)} marked FAIL" if failed else "")
    if orphans := sys.modules.get("flows.orphans"):
        done.append(orphans.end_claimed_flow_runs(reason))
    stop_descendants()
    said = "; ".join(d for d in done if d)
    sys.stderr.write(f"{_PROGRAM or 'advdesign'}: {reason}" + (f": {said}" if said else "") + "\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, …), from /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_descendants(grace_s: float = 3.0) -> None:
    """SIGTERM to every process below this one, SIGKILL to those still there after ``grace_s``. All of them, not
    only the direct children: a Dask worker process starts its own ephemeral Prefect server, which outlived it and
    held the terminal's pipe open when only the worker was stopped."""
    import time

    pids = _descendants(os.getpid()) or [c.pid for c in multiprocessing.active_children()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        multiprocessing.active_children()  # reaps the children that ended, so they stop counting as running
        time.sleep(0.05)
    for pid in pids:
        if _running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child that ended but that nobody has waited for yet)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def take_back_signals() -> None:
    """Put the command line's handler back in front of one a library installed since (Prefect's flow engine
    installs its own SIGTERM handler for each flow run); nothing outside :func:`exit_cleanly` or off the main
    thread."""
    if _PROGRAM is None or threading.current_thread() is not threading.main_thread():
        return
    for sig in REASONS:
        signal.signal(sig, _on_signal)


@contextmanager
def exit_cleanly(program: str) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM end the process as the module says, ``program`` naming it in the
    line; the previous handlers come back after it."""
    global _PROGRAM
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in REASONS}
    _PROGRAM = program
    take_back_signals()
    try:
        yield
    finally:
        _PROGRAM = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def quiet_worker() -> None:
    """Initializer of a forked worker process: the parent decides what Ctrl-C and SIGTERM mean. A fork inherits
    the parent's handlers, so without this every worker printed its own KeyboardInterrupt traceback, or raised the
    parent's exception into the chunk it was scoring and went on to the next."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
