"""A new media stream carries a call on: its admission, the restore step at stream
start, and the one-stream-per-call rule inside one process.

The rules are in ``state/resume.py``; this module does their reads and writes. At
``start`` the driver first asks :func:`admit_stream` whether the stream may start: a
stream the load would refuse as a new call is admitted when its CallSid names a
resumable call (``session/load.py`` rule 6: an accepted call is never failed by
load). The ``resume`` parameter the connect action adds is not trusted on its own (a
media socket carries no signature): only a state in the store makes a stream a
resumed one. Then the driver asks :func:`take_over` whether the stream's CallSid
names a resumable call. If so the call's state is claimed (rule 4 there), its dialog
is restored from the snapshot, its row is read back from the event store (start
time, booking id, costs) and the event store continues the call's ``seq`` in a fresh
block (``events/store.py`` rule 2). Any failure on the way (store down, deadline
passed, a snapshot the dialog cannot read) makes the stream a new call: the caller
is greeted again rather than left in silence.

:class:`StreamRegistry` keeps, per process, the live stream of each CallSid; a
second stream for the same CallSid takes over and the first is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from voicerail.dialog.base import Dialog
from voicerail.errors import StateConflict, StoreError
from voicerail.events.store import CallRecord
from voicerail.session.load import Decision
from voicerail.session.runtime import Runtime
from voicerail.state.resume import claim, resumable
from voicerail.state.session import SessionState
from voicerail.state.worker import WorkerIdentity

log = logging.getLogger(__name__)

#: Longest wait for each state-store or event-store step of a takeover, seconds.
TAKE_OVER_TIMEOUT_S = 2.0
#: Claims tried when another stream writes the call at the same time.
_CLAIM_TRIES = 3


@dataclass(frozen=True)
class Resumed:
    """A call this stream carries on.

    Attributes:
        state: the claimed state (this worker's version).
        previous_worker: the worker that wrote the state before the claim.
        dialog: the call's dialog, restored from the snapshot.
        row: the call's row as the event store had it (None: not found).
    """

    state: SessionState
    previous_worker: str
    dialog: Dialog
    row: CallRecord | None

    @property
    def reopened(self) -> bool:
        """The row had been closed (the lost-call sweep ran first)."""
        return self.row is not None and self.row.outcome is not None

    def event_data(self, worker: WorkerIdentity, turns: int) -> dict[str, Any]:
        """The ``CallResumed`` event's data (``events/schema.md``)."""
        return {
            "stream": self.state.resumes + 1,
            "worker_pid": worker.pid,
            "previous_worker": self.previous_worker,
            "turns": turns,
            "reopened": self.reopened,
            "outcome_so_far": self.state.outcome,
        }

    def record(self, stream_sid: str | None, agent: str, worker: WorkerIdentity) -> CallRecord:
        """The call's row, open again and served by ``worker`` (``agent``: the
        agent's name, when the row was not found)."""
        row = self.row
        data: dict[str, Any] = dict(row.data) if row is not None else {}
        data.update(worker=str(worker), worker_pid=worker.pid, streams=self.state.resumes + 1)
        if self.state.booking_id:
            data["booking_id"] = self.state.booking_id
        return CallRecord(
            call_id=self.state.call_id,
            agent=row.agent if row is not None else agent,
            started_at=row.started_at if row is not None else self.state.updated_at,
            call_sid=self.state.call_sid,
            stream_sid=stream_sid,
            data=data,
        )


async def admit_stream(
    runtime: Runtime, call_sid: str | None, *, timeout_s: float = TAKE_OVER_TIMEOUT_S
) -> Decision:
    """Admission of a stream that has sent ``start`` (``session/load.py`` rules 1-6).

    The state store is read only when the load refuses the stream as a new call
    (and not for a drain, which refuses resumed streams too).

    Never raises: a store error or a passed deadline leaves the refusal as it is.
    """
    load = runtime.load
    decision = load.admit(reservation=call_sid)
    if decision.admit or load.draining or runtime.state is None or not call_sid:
        return decision
    try:
        state = await asyncio.wait_for(runtime.state.load_by_call_sid(call_sid), timeout_s)
    except (StoreError, TimeoutError) as exc:
        log.warning("stream refused by load; its call state is unavailable (%s)", exc)
        return decision
    if not resumable(state):
        return decision
    load.refused -= 1  # counted by the first admit(); not refused after all (rule 6)
    return load.admit(resumed=True)


async def take_over(
    runtime: Runtime, call_sid: str | None, *, timeout_s: float = TAKE_OVER_TIMEOUT_S
) -> Resumed | None:
    """The call ``call_sid`` names, claimed for this worker; None for a new call.

    Never raises: a store error or a passed deadline is logged and gives None.
    """
    if runtime.state is None or not call_sid:
        return None
    try:
        claimed = await _claim(runtime, call_sid, timeout_s)
    except (StoreError, TimeoutError) as exc:
        log.warning("stream for a known call sid: state unavailable, new call (%s)", exc)
        return None
    if claimed is None:
        return None
    state, previous, dialog = claimed
    row = None
    try:
        row = await asyncio.wait_for(
            asyncio.to_thread(runtime.events.call, state.call_id), timeout_s
        )
        continue_call = getattr(runtime.events, "continue_call", None)
        if continue_call is not None:
            await asyncio.wait_for(asyncio.to_thread(continue_call, state.call_id), timeout_s)
    except (StoreError, TimeoutError) as exc:
        # The call goes on; its timeline may miss the older stream's row fields.
        log.warning("call %s: event store read at resume failed: %s", state.call_id, exc)
    return Resumed(state, previous.worker, dialog, row)


async def _claim(
    runtime: Runtime, call_sid: str, timeout_s: float
) -> tuple[SessionState, SessionState, Dialog] | None:
    """Load, restore and claim (``state/resume.py`` rules 1 and 4).

    Raises:
        StoreError: the state store failed.
        TimeoutError: it did not answer within ``timeout_s``.
    """
    assert runtime.state is not None
    for _ in range(_CLAIM_TRIES):
        state = await asyncio.wait_for(runtime.state.load_by_call_sid(call_sid), timeout_s)
        if state is None or not resumable(state):
            return None
        dialog = runtime.agent.new_dialog(state.call_id)
        restore = getattr(dialog, "restore", None)
        if restore is None:
            log.warning("call %s: its dialog cannot be restored; new call", state.call_id)
            return None
        try:
            restore(state.dialog)
        except StoreError as exc:
            log.warning("call %s: %s; new call", state.call_id, exc)
            return None
        claimed = claim(state, str(runtime.worker), runtime.clock.wall())
        try:
            await asyncio.wait_for(runtime.state.save(claimed), timeout_s)
        except StateConflict:
            continue  # another stream wrote it meanwhile: read again
        return claimed, state, dialog
    log.warning("call sid %s: state kept changing; new call", call_sid)
    return None


class Stream(Protocol):
    """What the registry needs of a stream (:class:`~voicerail.session.driver.CallSession`)."""

    def take_over(self) -> None:
        """A newer stream of the same call has started: stop without ending the call."""
        ...


class StreamRegistry:
    """The live stream of each CallSid in this process (``state/resume.py`` rule 3)."""

    def __init__(self) -> None:
        self._by_sid: dict[str, Stream] = {}

    def started(self, call_sid: str | None, stream: Stream) -> Stream | None:
        """``stream`` is now the CallSid's stream; the one it replaces (told to stop)."""
        if not call_sid:
            return None
        previous = self._by_sid.get(call_sid)
        self._by_sid[call_sid] = stream
        if previous is None or previous is stream:
            return None
        previous.take_over()
        return previous

    def ended(self, call_sid: str | None, stream: Stream) -> None:
        """``stream`` ended; forgotten unless a newer one replaced it."""
        if call_sid and self._by_sid.get(call_sid) is stream:
            del self._by_sid[call_sid]

    def __len__(self) -> int:
        return len(self._by_sid)
