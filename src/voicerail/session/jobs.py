"""The dialog jobs of one call and their decision records.

A job is what the agent does between two caller actions: greet (or, on a resumed
stream, recap), answer a turn (transcribe it, ask the dialog, speak the reply),
reprompt after silence, say goodbye after too much silence, reply to a key. The
driver (``session/driver.py``) starts at most one at a time (its rule 2); each
records what it decided as events:

* ``UserTurnEnded`` and ``TranscriptFinal`` for a caller's turn (with how the end
  was decided, the inbound lag and whether a speculative transcript was used);
* ``DialogDecided`` for every reply, ``BookingWritten`` and ``HandoffRequested``
  when the reply says so, and the call's outcome (``turns/outcome.py``);
* the turn handed to the state recorder (``state/recorder.py``) so that a new
  stream can carry the call on.

Rules:

1. A job never ends the call itself on a provider failure it can live with: an
   STT that gives no answer makes the caller be asked again (``stt_failed``).
2. The caller's text of a turn that got no audible answer yet is kept and
   prefixed to the next turn until a reply's first audio plays, so a caller who
   speaks on before hearing an answer loses no words.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from voicerail.dialog.base import AgentReply
from voicerail.errors import ProviderError
from voicerail.events.model import EventKind, Stage
from voicerail.session.speech_io import SpeechToTextResult, transcribe
from voicerail.turns import outcome as outcomes
from voicerail.turns import policy as tp

if TYPE_CHECKING:
    from voicerail.session.driver import CallSession


class DialogJobs:
    """The agent jobs of one call, run by its :class:`CallSession`.

    Args:
        call: the call they belong to; jobs read its dialog, inbound audio and
            turn state, and speak through its :class:`~voicerail.session.speaking.Speaker`.
    """

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._clock = call.rt.clock

    async def greet(self) -> None:
        """Greet the caller (``DialogDecided`` reason ``greeting``) and speak it."""
        started = self._clock.monotonic()
        reply = await self.call.dialog.start()
        self.record_decision(reply, started, reason="greeting")
        await self.call._speaker.speak(reply)

    async def greet_resumed(self) -> None:
        """Recap for a resumed call (reason ``resumed``): the dialog's ``resume()``
        when it has one, else its greeting."""
        started = self._clock.monotonic()
        resume = getattr(self.call.dialog, "resume", None)
        reply = await resume() if resume is not None else await self.call.dialog.start()
        self.record_decision(reply, started, reason="resumed")
        await self.call._speaker.speak(reply)

    async def answer(self, turn: tp.EndUserTurn) -> None:
        """Answer one caller turn: record its end, transcribe it (the speculative
        transcript when it covers the turn), ask the dialog, speak the reply.
        A turn with no words is discarded; an STT failure is asked again (rule 1)."""
        self.call._turn_index += 1
        decided_by, endpoint_wait_s, turn_probability = self.call._turn_ends.last_end
        spec = self.call._turn_ends.speculation
        # How late the end is seen against the caller's audio clock: 0 when every
        # frame is read on arrival (up to a frame and a VAD window of rounding).
        due = self.call._inbound.origin_s + turn.speech_end_s + endpoint_wait_s
        inbound_lag_s = self._clock.monotonic() - due if math.isfinite(due) else None
        if inbound_lag_s is not None:
            self.call.rt.load.observe_inbound_lag(inbound_lag_s)
        self.call._emit(
            EventKind.USER_TURN_ENDED,
            Stage.VAD,
            data={
                "turn": self.call._turn_index,
                "speech_start_s": turn.speech_start_s,
                "speech_end_s": turn.speech_end_s,
                "endpoint_wait_s": round(endpoint_wait_s, 4),
                "ended_by": decided_by,
                "turn_probability": turn_probability,
                "turn_model_s": None
                if self.call._turn_ends.turn_model_s is None
                else round(self.call._turn_ends.turn_model_s, 4),
                "inbound_lag_s": None if inbound_lag_s is None else round(inbound_lag_s, 4),
                # per call so far: STT speculations started, and used by the turn
                # ends before this one
                "speculations": None if spec is None else [spec.started, spec.used],
            },
        )
        self.call._turn_ends.turn_model_s = None  # each turn reports its own model checks only
        waited_from = self._clock.monotonic()
        task = None
        if self.call._turn_ends.speculation is not None:
            task = self.call._turn_ends.speculation.take(turn.speech_start_s, turn.speech_end_s)
        if task is not None and task.cancelled():
            task = None
        try:
            if task is not None:
                result = await task
            else:
                result = await self.transcribe_span(turn.speech_start_s, turn.speech_end_s)
        except ProviderError as exc:
            # No recognizer answered in time: the caller is asked again, as for an
            # unintelligible turn, instead of losing the call.
            self.call._emit(
                EventKind.TRANSCRIPT_FINAL,
                Stage.STT,
                provider=exc.provider,
                outcome="error",
                error_class=str(exc.error_class),
                data={"turn": self.call._turn_index, "error": str(exc)},
            )
            reply = await self.call.dialog.on_user_turn("", None)
            self.record_decision(reply, self._clock.monotonic(), reason="stt_failed")
            await self.call._speaker.speak(reply)
            return
        text, confidence = self._record_transcript(
            result, speculative=task is not None, waited_s=self._clock.monotonic() - waited_from
        )
        if not text:
            await self.call._apply(
                self.call.turns.handle(tp.TurnDiscarded(), self._clock.monotonic())
            )
            return
        text = f"{self.call._unanswered_text} {text}".strip()
        self.call._unanswered_text = text
        self.call._caller_text = text
        started = self._clock.monotonic()
        reply = await self.call.dialog.on_user_turn(text, confidence)
        self.record_decision(reply, started, reason="user_turn")
        await self.call._speaker.speak(reply)

    async def transcribe_span(
        self, speech_start_s: float, speech_end_s: float
    ) -> SpeechToTextResult:
        """Run STT on the call audio between two stream times (seconds of the
        call's stream, plus pre-roll); also the speculative transcript's job
        (``session/turn_ends.py``).

        Raises:
            ProviderError: no STT answered.
        """
        preroll_s = self.call.rt.audio.preroll_s
        start_s = max(0.0, speech_start_s - preroll_s)
        pcm16k = self.call._inbound.pcm16k(start_s, speech_end_s + preroll_s)
        return await transcribe(self.call.stt, pcm16k, self._clock)

    def _record_transcript(
        self, result: SpeechToTextResult, *, speculative: bool, waited_s: float
    ) -> tuple[str, float | None]:
        final = result.final
        text = final.text.strip() if final is not None else ""
        confidence = final.confidence if final is not None else None
        # compliance/dialog.py: spoken cards and personal data redacted before recording.
        screen = getattr(self.call.dialog, "screen_transcript", None)
        recorded, text = screen(text) if screen is not None else (text, text)
        self.call._emit(
            EventKind.TRANSCRIPT_FINAL,
            Stage.STT,
            provider=final.usage.provider if final and final.usage else self.call.stt.name,
            model=final.usage.model if final and final.usage else self.call.stt.model,
            latency_s=result.elapsed_s,
            outcome="ok",
            data={
                "turn": self.call._turn_index,
                "confidence": confidence,
                "num_words": len(text.split()),
                "audio_s": result.audio_s,
                "speculative": speculative,
                "wait_after_turn_end_s": waited_s,
            },
            pii={"text": recorded},
        )
        return text, confidence

    async def reprompt(self, count: int) -> None:
        """Ask again after the ``count``-th silence (``Reprompted``, reason ``silence``)."""
        self.call._emit(EventKind.REPROMPTED, Stage.DIALOG, data={"count": count})
        started = self._clock.monotonic()
        reply = await self.call.dialog.on_silence(count)
        self.record_decision(reply, started, reason="silence")
        await self.call._speaker.speak(reply)

    async def say_goodbye_after_silence(self) -> None:
        """Say the dialog's goodbye after the last reprompt, then end the call
        (``ended_by: silence``)."""
        started = self._clock.monotonic()
        reply = await self.call.dialog.on_silence(self.call.turns.state.reprompts + 1, final=True)
        self.record_decision(reply, started, reason="silence_hangup")
        await self.call._speaker.speak(reply, end_reason="silence")

    async def reply_to_dtmf(self, digit: str) -> None:
        """Answer a key the caller pressed (reason ``dtmf``)."""
        started = self._clock.monotonic()
        reply = await self.call.dialog.on_dtmf(digit)
        self.record_decision(reply, started, reason="dtmf")
        await self.call._speaker.speak(reply)

    def record_decision(self, reply: AgentReply, started_s: float, *, reason: str) -> None:
        """Record a reply as ``DialogDecided`` (``latency_s`` since ``started_s``,
        the call's monotonic clock), its booking and handoff, the outcome it
        decides, and hand the turn to the state recorder."""
        data: dict[str, Any] = {
            "reason": reason,
            "intent": reply.intent,
            "node": reply.node,
            "end_call": reply.end_call,
            "handoff": reply.handoff,
            **reply.data,
        }
        self.call._emit(
            EventKind.DIALOG_DECIDED,
            Stage.DIALOG,
            latency_s=self._clock.monotonic() - started_s,
            outcome=str(reply.outcome) if reply.outcome else None,
            data=data,
            pii={"agent_text": reply.text, **reply.pii},
        )
        if reply.booking_id:
            self.call.record.data["booking_id"] = reply.booking_id
            self.call._emit(
                EventKind.BOOKING_WRITTEN, Stage.CRM, data={"booking_id": reply.booking_id}
            )
        if reply.handoff:
            self.call._emit(
                EventKind.HANDOFF_REQUESTED,
                Stage.HANDOFF,
                data={"intent": reply.intent, "node": reply.node},
            )
            self.call.record.data["handoff"] = True
        self.call._outcome = outcomes.decide(self.call._outcome, reply.outcome)
        self.record_state(reply)

    def record_state(self, reply: AgentReply) -> None:
        """Hand this turn to the state recorder (written in the background)."""
        if self.call._recorder is None:
            return
        snapshot = getattr(self.call.dialog, "snapshot", None)  # a dialog that can be restored
        self.call._recorder.turn(
            caller_text=self.call._caller_text,
            agent_text=reply.text,
            outcome=str(self.call._outcome) if self.call._outcome is not None else None,
            booking_id=self.call.record.data.get("booking_id"),
            dialog=snapshot() if snapshot is not None else None,
            providers={"stt": self.call.stt.name, "tts": self.call.tts.name},
        )
        self.call._caller_text = ""
