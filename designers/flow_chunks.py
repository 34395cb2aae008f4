"""Finished chunks of a batch of car flows, kept on disk until the whole batch is scored (:class:`ChunkStore`), and
the digest that names them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def digest(*parts: str | bytes) -> str:
    """SHA-256 of the parts in order, hex."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
    return hasher.hexdigest()


def chunk_folder() -> Path:
    """Where unfinished labelling batches keep their finished flow chunks: beside Prefect's results."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect") / "car-flow-chunks"


class ChunkStore:
    """The finished chunks of one batch of flows, on disk until the whole batch is done.

    A Prefect oracle task persists its result only when all its blueprints are scored, so a kill used to lose every
    batch in flight (minutes of flow); with each chunk saved as it finishes, the same task run again reads them
    back and simulates only the rest. Keyed by ``fingerprint`` (the flow's settings and the solver's source) and
    the chunk's blueprint keys; best effort: a folder that cannot be written only costs the recovery.
    """

    def __init__(self, fingerprint: str, folder: Path | None = None) -> None:
        self.folder = (folder or chunk_folder()) / fingerprint[:32]
        self.touched: list[Path] = []

    def _path(self, keys: list[str]) -> Path:
        return self.folder / f"{digest(json.dumps(keys))[:32]}.json"

    def load(self, keys: list[str]) -> dict[str, Any] | None:
        path = self._path(keys)
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("keys") != keys:
            return None
        self.touched.append(path)
        return saved

    def save(self, keys: list[str], values: dict[str, Any]) -> None:
        path = self._path(keys)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps({"keys": keys, **values}))
            os.replace(partial, path)  # whole or absent: a kill mid-write leaves no half chunk to read back
        except OSError:
            return
        self.touched.append(path)

    def forget(self) -> None:
        for path in self.touched:
            path.unlink(missing_ok=True)
        self.touched.clear()
        try:
            self.folder.rmdir()
        except OSError:
            pass  # not empty: another process's batch with the same settings is still running
