"""Progress on the terminal for the long stages: labelling, training epochs, oracle batches, search rounds.

Off unless the command line turns it on (:func:`enable`, when both stdout and stderr are a terminal:
``advdesign.cli.progress_for_terminal``), so pipes, ``--json -``, tests and library callers see nothing. When on,
the bars go to stderr, transient ones vanish when done, and the ``advdesign`` logger's lines (a stage starting,
each design-loop round) are printed above the bars instead of being dropped below the warning level.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from tqdm.auto import tqdm

_ENABLED = False
#: What the oracle batches submitted now belong to (``label 2,000 molecules``); unnamed batches (a search round's)
#: get a transient bar.
_STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("advdesign_progress_stage", default=None)
_LOGGER = "advdesign"


class _LineHandler(logging.Handler):
    """A log record as one line above the bars (``tqdm.write`` keeps a bar from being torn in two)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 — logging must never break the work it describes
            self.handleError(record)


_HANDLER = _LineHandler()
_HANDLER.setFormatter(logging.Formatter("%(message)s"))


def enable(on: bool = True) -> None:
    """Show bars and stage lines in this process (the command line calls this for a terminal); ``False`` undoes it."""
    global _ENABLED
    _ENABLED = on
    logger = logging.getLogger(_LOGGER)
    if on and _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Prefect's console handler on the root logger would print each line again
    elif not on and _HANDLER in logger.handlers:
        logger.removeHandler(_HANDLER)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def enabled() -> bool:
    return _ENABLED


def bar(total: int, description: str, unit: str = "it", leave: bool = True, every_step: bool = False) -> Any:
    """A progress bar on stderr (a disabled one, drawing nothing, unless :func:`enable` was called);
    ``every_step``: redraw at every update (steps as slow as an epoch), not at most ten times a second."""
    return tqdm(total=total, desc=description, unit=unit, leave=leave, disable=not _ENABLED, file=sys.stderr,
                dynamic_ncols=True, mininterval=0 if every_step else 0.1)


def say(line: str) -> None:
    """One line about the stage starting now, above any bar."""
    if _ENABLED:
        tqdm.write(line, file=sys.stderr)


@contextmanager
def stage(description: str) -> Iterator[None]:
    """Name the oracle batches submitted within the block (their bar stays, as that stage's line)."""
    token = _STAGE.set(description)
    try:
        yield
    finally:
        _STAGE.reset(token)


def current_stage() -> str | None:
    return _STAGE.get()
