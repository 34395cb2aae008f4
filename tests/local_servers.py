"""Helpers for tests that start real servers on loopback (the MLflow UI, PostgreSQL, MLflow and Prefect servers)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    """Until ``url`` answers 200; ``RuntimeError`` with the end of ``log`` if ``process`` exits or time runs out."""
    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200

    _wait_until(answers, url, process, log, timeout_s)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (a server that speaks no HTTP: Dask's scheduler)."""
    def accepts() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True

    _wait_until(accepts, f"port {port}", process, log, timeout_s)


def _wait_until(ready, what: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{what}: no answer in {timeout_s:.0f} s: {log.read_text()[-2000:]}")
