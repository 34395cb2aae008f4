"""Prefect flow runs left Running by a process that died (``kill -9``, an out-of-memory kill, a lost machine).

Prefect marks a flow run Crashed only when its own engine sees the crash, or when a worker watches the process; a
flow called from ``advdesign campaign`` has no worker, so a killed campaign's flow run (and its task runs) would
stay Running in the UI forever. Each flow therefore calls :func:`claim_flow_run` first: it labels its own flow run
with the process that runs it (the same pid, host and start-time tags :class:`tasks.tracking.Tracker` puts on MLflow
runs), and marks Crashed — Cancelled if a cancellation was already under way — the flow runs so labelled whose
process on this host is gone, with a message saying so.
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from uuid import UUID

from advdesign import interrupts
from tasks.tracking import HOST_TAG, PID_TAG, PROCESS_START_TAG, process_alive, process_tags

log = logging.getLogger("advdesign")

#: The flow runs this process runs (claimed), newest last: what a signal ends (:func:`end_claimed_flow_runs`).
_CLAIMED: list[UUID] = []
#: At most this many Running flow runs are looked at per start-up: orphans accumulate one per killed run, so a
#: sweep at every start keeps their number small.
SWEEP_LIMIT = 200


def orphan_reason(labels: dict[str, Any], host: str | None = None) -> str | None:
    """Why a flow run with these labels is an orphan (its process on this host is gone), or ``None`` when its
    process lives, runs elsewhere, or was never recorded (not ours to judge)."""
    host = host or socket.gethostname()
    pid = str(labels.get(PID_TAG, ""))
    if labels.get(HOST_TAG) != host or not pid.isdigit():
        return None
    started = labels.get(PROCESS_START_TAG)
    if process_alive(int(pid), None if started is None else str(started)):
        return None
    return f"orphaned: process {pid} on {host} ended with the flow run still running"


def reap_orphan_flow_runs(client: Any, keep: UUID | None = None) -> list[UUID]:
    """Mark this host's flow runs whose process is gone Crashed (Cancelling ones Cancelled), with their Running or
    Pending task runs Crashed too; returns the flow run ids marked. ``client``: a sync Prefect client."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    host = socket.gethostname()
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.CANCELLING]))),
        limit=SWEEP_LIMIT)
    reaped = []
    for run in runs:
        reason = None if run.id == keep else orphan_reason(run.labels or {}, host)
        if reason is None:
            continue
        _end_flow_run(client, run, reason)
        reaped.append(run.id)
    return reaped


def _end_flow_run(client: Any, run: Any, reason: str) -> None:
    """``run`` Crashed (Cancelled when it was Cancelling), its Running or Pending task runs Crashed."""
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState,
                                                TaskRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Crashed

    cancelling = run.state is not None and run.state.type == StateType.CANCELLING
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(
            type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))))
    for task_run in tasks:
        client.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
    client.set_flow_run_state(run.id, (Cancelled if cancelling else Crashed)(message=reason), force=True)


def claim_flow_run() -> list[UUID]:
    """Label the current flow run with this process and reap the orphans of dead ones (see the module); the ids
    reaped. Outside a flow run it does nothing. Best effort: a failure is logged and the flow goes on, since a
    stale Running entry in the UI is not worth stopping a campaign for."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    _CLAIMED.append(context.flow_run.id)
    interrupts.take_back_signals()  # Prefect's flow engine installed its own handler: the command line's comes first
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(context.flow_run.id, process_tags())
            reaped = reap_orphan_flow_runs(client, keep=context.flow_run.id)
    except Exception as exc:  # noqa: BLE001 — see the docstring
        log.warning("could not check for orphaned Prefect flow runs: %s", str(exc).splitlines()[0] if str(exc) else
                    type(exc).__name__)
        return []
    if reaped:
        log.warning("marked %d Prefect flow run(s) of dead processes Crashed: %s", len(reaped),
                    ", ".join(str(r) for r in reaped))
    return reaped


def end_claimed_flow_runs(reason: str) -> str:
    """Mark Crashed the flow runs of this process that are still running (called by the command line's signal
    handler, :mod:`advdesign.interrupts`, just before the process exits); what happened, for its one line. Fast or
    nothing: no retries and a short timeout, since the API may be gone (``kill`` of the whole process group stops
    the ephemeral server too); then the next flow on this host marks them Crashed (:func:`reap_orphan_flow_runs`)."""
    if not _CLAIMED:
        return ""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    ended = []
    try:
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: 3.0}), \
                get_client(sync_client=True) as client:
            for run_id in reversed(_CLAIMED):
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.type in (StateType.RUNNING, StateType.CANCELLING):
                    _end_flow_run(client, run, reason)
                    ended.append(run.name)
    except Exception:  # noqa: BLE001 — see the docstring
        return "Prefect flow run left for the next run to mark Crashed (API unreachable)"
    return f"Prefect flow run {', '.join(ended)} Crashed" if ended else ""
