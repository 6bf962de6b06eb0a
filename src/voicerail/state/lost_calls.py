"""Calls left open by a worker that died, closed as ``failed`` with cause ``worker_lost``.

A worker killed without a chance to finish (``kill -9``, out of memory, a host
crash) leaves its calls' rows with no outcome and no end time. Nobody hung up on
those calls, so they must not read as ``abandoned``; they are closed here as
``failed``, ``error: worker_lost``, with a ``CallEnded`` event saying so.

Rules:

1. Only a call whose row names its worker (``data["worker"]``, written when the
   stream starts) and whose worker is known dead (``state/worker.py`` rule 2) is
   closed; a row without a worker, or on another host, is left alone.
2. The store must be opened after the dead worker stopped writing (events get
   their ``seq`` from the store's view when it opened); the supervisor opens a
   fresh one for each sweep.
3. A call another worker carried on (``session/resume.py``) names that live
   worker on its row, so rule 1 leaves it open; with a state store the
   supervisor sweeps only after a grace period (``server/workers.py`` rule 4),
   and a resume later than that reopens the row it finds closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from voicerail.clock import Clock, SystemClock
from voicerail.events.model import Event, EventKind, Outcome, Stage
from voicerail.events.store import CallRecord, EventStore, SQLReader, call_from_row
from voicerail.state.worker import WorkerIdentity, is_alive

log = logging.getLogger(__name__)

#: The error and ``ended_by`` of a call whose worker died under it.
WORKER_LOST = "worker_lost"


def open_calls(store: EventStore) -> list[CallRecord]:
    """Rows with no outcome yet (calls in progress, or lost).

    Raises:
        StoreError: the read failed.
    """
    if not isinstance(store, SQLReader):
        return []
    rows = store.fetch("SELECT * FROM calls WHERE outcome IS NULL ORDER BY started_at")
    return [call_from_row(r) for r in rows]


def close_lost_calls(
    store: EventStore,
    *,
    clock: Clock | None = None,
    alive: Callable[[WorkerIdentity], bool | None] = is_alive,
) -> list[str]:
    """Close every open call whose worker is dead (rule 1); returns their call ids.

    Args:
        store: the event store, opened after the dead workers stopped (rule 2).
        clock: wall and monotonic time of the ``CallEnded`` events.
        alive: whether a worker lives (True/False) or cannot be told (None).

    Raises:
        StoreError: reading the open calls failed.
    """
    clock = clock or SystemClock()
    closed = []
    for call in open_calls(store):
        worker = WorkerIdentity.parse(str(call.data.get("worker", "")))
        if worker is None or alive(worker) is not False:
            continue
        store.append(
            Event(
                call_id=call.call_id,
                kind=EventKind.CALL_ENDED,
                at_wall=clock.wall(),
                at_mono=clock.monotonic(),
                stage=Stage.TELEPHONY,
                outcome=str(Outcome.FAILED),
                data={"ended_by": WORKER_LOST, "error": WORKER_LOST, "worker": str(worker)},
            )
        )
        store.save_call(
            replace(call, ended_at=clock.wall(), outcome=str(Outcome.FAILED), error=WORKER_LOST)
        )
        closed.append(call.call_id)
        log.warning("call %s closed as failed: its worker %s died", call.call_id, worker)
    return closed
