"""A call's start and end: admission, a new or resumed call's first records, and
its outcome and final row.

Rules (the driver's rule 5):

1. A stream becomes a call at the transport's ``CallAnswered`` (Twilio's
   ``start``), once admitted (``session/load.py``; a stream that carries on an
   accepted call is never refused, ``session/resume.py``). Only then is it
   counted, recorded (``CallStarted`` or ``CallResumed`` and its row) and
   greeted; a refused stream records ``CallRefused`` and closes with 1013.
2. A socket that closes while the state store is read leaves no call behind.
3. At the end, the outcome is decided once (``turns/outcome.py``), the dialog's
   call-end hook runs (CRM writes), ``CallEnded`` is recorded and the row saved.
   A stream taken over by a newer one records nothing: the call goes on there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from voicerail.events.model import EventKind, Outcome, Stage
from voicerail.events.store import CallRecord
from voicerail.session.resume import Resumed, admit_stream, take_over
from voicerail.session.runtime import current_call_id
from voicerail.state.recorder import CallStateRecorder
from voicerail.state.session import SessionState
from voicerail.turns import outcome as outcomes
from voicerail.wire.transport import CallAnswered

if TYPE_CHECKING:
    from voicerail.session.driver import CallSession

log = logging.getLogger(__name__)

#: WebSocket close code "Try Again Later" (RFC 6455 §7.4.1, IANA registry).
CLOSE_TRY_AGAIN_LATER = 1013


class CallLifecycle:
    """Starts and finishes one :class:`CallSession`'s call record.

    Args:
        call: the call; its record, load slot, state recorder and first job are
            set here.
    """

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._clock = call.rt.clock

    def finish(self) -> None:
        """Record the call's end (rule 3); nothing for a stream that was no call."""
        if self.call._taken_over and self.call.started:
            log.info("call %s: stream replaced by a newer one", self.call.call_id)
            return
        if not self.call.started:
            # Not a call (rule 5): nothing recorded; one line says why it closed.
            log.info(
                "media stream %s closed before 'start' (%s): %s",
                self.call.call_id,
                self.call._ended_by,
                self.call._error or "no error",
            )
            return
        outcome = outcomes.final(
            error=self.call._error, decided=self.call._outcome, ended_by=self.call._ended_by
        )
        # A dialog with a CRM queues its call-end writes (summary, disposition, lead).
        if (call_ended := getattr(self.call.dialog, "on_call_ended", None)) is not None:
            call_ended(str(outcome), self.call._turn_index)
        now = self._clock.wall()
        self.call._emit(
            EventKind.CALL_ENDED,
            Stage.TELEPHONY,
            outcome=str(outcome),
            data={
                "ended_by": self.call._ended_by,
                "error": self.call._error,
                "turns": self.call._turn_index,
            },
        )
        data = dict(self.call.record.data)
        data["turns"] = self.call._turn_index
        self.call.record = CallRecord(
            call_id=self.call.call_id,
            agent=self.call.record.agent,
            started_at=self.call.record.started_at,
            ended_at=now,
            outcome=str(outcome),
            error=self.call._error,
            call_sid=self.call.transport.call_ref,
            stream_sid=self.call.transport.stream_ref,
            data=data,
        )
        self.call.rt.events.save_call(self.call.record)
        if outcome is Outcome.FAILED:
            log.warning(
                "call %s failed (%s): %s", self.call.call_id, self.call._ended_by, self.call._error
            )

    async def start(self, start: CallAnswered) -> None:
        """Admit the stream and start the call, new or resumed (rules 1 and 2)."""
        # Admission (session/load.py): a stream the webhook announced holds a slot
        # under its CallSid; one beyond capacity is refused before it is a call,
        # unless it carries on an accepted call (session/resume.py).
        decision = await admit_stream(self.call.rt, start.call_ref or None)
        if self.call._done.is_set():
            return  # the socket closed while the state was read
        if not decision.admit:
            reason = f"refused: {decision.reason}"
            self.call._emit(
                EventKind.CALL_REFUSED,
                Stage.TELEPHONY,
                outcome="refused",
                data={"where": "stream", "reason": decision.reason},
                pii={"call_sid": start.call_ref},
            )
            log.warning("call %s: stream refused (%s)", self.call.call_id, decision.reason)
            self.call._end(reason, close_code=CLOSE_TRY_AGAIN_LATER)
            return
        if self.call._streams is not None:
            self.call._streams.started(start.call_ref, self.call)
        resumed = await take_over(self.call.rt, start.call_ref)
        if self.call._done.is_set():
            return  # the socket closed while the state was read
        self.call._admitted = True
        if resumed is not None:
            self._on_resumed_start(start, resumed)
            return
        self.call.rt.load.call_started(self.call.call_id, reservation=start.call_ref or None)
        self.call.record = CallRecord(
            call_id=self.call.call_id,
            agent=self.call.record.agent,
            started_at=self._clock.wall(),
            call_sid=start.call_ref,
            stream_sid=start.stream_ref,
            data={
                "custom_parameters": sorted(start.custom_parameters),
                "worker": str(self.call.rt.worker),  # for state/lost_calls.py
                "worker_pid": self.call.rt.worker.pid,
                "transport": self.call.transport.name,
            },
        )
        self.call._emit(EventKind.CALL_STARTED, Stage.TELEPHONY)
        self.call.rt.events.save_call(self.call.record)
        if self.call.rt.state is not None:
            first = SessionState(
                self.call.call_id, call_sid=start.call_ref, worker=str(self.call.rt.worker)
            )
            self.call._recorder = CallStateRecorder(
                self.call.rt.state, first, self._clock.wall, on_conflict=self.call.take_over
            )
        self._on_stream_started(start)
        self.call._start_job(self.call._jobs.greet())

    def _on_stream_started(self, start: CallAnswered) -> None:
        self.call._emit(
            EventKind.STREAM_STARTED,
            Stage.TELEPHONY,
            data={
                "stream_sid": start.stream_ref,
                "tracks": list(start.tracks),
                "encoding": start.encoding,
                "sample_rate_hz": start.sample_rate_hz,
                "transport": self.call.transport.name,
                "worker_pid": self.call.rt.worker.pid,
            },
            pii={"call_sid": start.call_ref, "custom_parameters": dict(start.custom_parameters)},
        )
        # A dialog with a CRM starts the caller lookup now; the greeting does not wait.
        if (caller_known := getattr(self.call.dialog, "caller_known", None)) is not None:
            caller_known(start.caller)

    def _on_resumed_start(self, start: CallAnswered, resumed: Resumed) -> None:
        """Carry the call on (``session/resume.py``): its id, dialog, turns, outcome
        and booking; the caller hears a recap instead of the greeting."""
        state = resumed.state
        self.call.call_id = state.call_id
        current_call_id.set(self.call.call_id)  # tasks started from here on
        self.call.dialog = resumed.dialog
        self.call._bind_providers()
        self.call._turn_index = max(0, len(state.turns) - 1)
        self.call._outcome = Outcome(state.outcome) if state.outcome else None
        self.call.rt.load.call_started(self.call.call_id, reservation=start.call_ref or None)
        worker = self.call.rt.worker
        self.call.record = resumed.record(start.stream_ref, self.call.rt.agent.name, worker)
        self.call.rt.events.save_call(self.call.record)
        assert self.call.rt.state is not None  # take_over() resumes only with a state store
        self.call._recorder = CallStateRecorder(
            self.call.rt.state, state, self._clock.wall, on_conflict=self.call.take_over
        )
        data = resumed.event_data(worker, self.call._turn_index)
        self.call._emit(EventKind.CALL_RESUMED, Stage.TELEPHONY, data=data)
        self._on_stream_started(start)
        self.call._start_job(self.call._jobs.greet_resumed())
