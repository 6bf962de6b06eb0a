"""The call driver: runs one call's turn loop over a Twilio media stream.

(Over 800 lines: it is the one place where a call's tasks, sends and events
meet, and each part reads the same per-call state; admission, stream limits,
the phrase cache, the holding phrase, the CRM hooks and resume (its reads and
rules in ``session/resume.py``) each added their few lines here. Issue 15
splits it over a transport seam into inbound audio, playback (synthesis to
paced frames, marks, the holding phrase), outcome rules and dialog jobs; until
then each addition stays a small method.)

It is the only place where the pure parts meet I/O, and it is boring on
purpose: the wire codec parses, the audio pipeline detects speech, the
turn-taking policy decides, and the driver executes the actions it is handed
(transcribe, answer, speak, clear, hang up) and records every step as an event.

Rules:

1. One :class:`CallSession` per call; it owns that call's protocol object, VAD
   state, ring buffer, dialog and playback tracker. Nothing is shared between
   calls except the :class:`~voicerail.session.runtime.Runtime`.
2. At most one agent job (greeting, answer, reprompt, DTMF reply) runs at a
   time; starting one cancels the previous.
3. Outbound audio is paced in 20 ms frames (grouped ``frames_per_media`` to
   a message when already queued) at most ``playback_lead_s`` ahead of real
   time; every sentence is followed by a ``mark`` so the driver knows
   what the caller heard. A barge-in bumps the playback generation, which drops
   everything still queued, and sends ``clear``.
4. ``except Exception`` appears only at task boundaries, where the error is
   recorded as an event and the call ends with outcome ``failed``.
5. A call exists from ``start`` on: only then is it recorded (``CallStarted`` and
   its row) and counted; a socket that never sends ``start`` leaves no call behind.
   The stream's deadlines and real-time rule (``wire/stream_limits.py``) are checked
   on every ``media`` and every tick; a broken one ends the stream with 1008.
6. Every call that ends with an error writes one log line naming the call and
   the cause.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import voicerail.wire.twilio as twilio
from voicerail.audio import endpointing
from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.audio.resample import resample
from voicerail.audio.ring import AudioRingBuffer
from voicerail.audio.vad import EnergyVAD, SileroVAD, SileroVADModel
from voicerail.audio.vad_batch import BatchedSileroVAD, SileroBatcher
from voicerail.compliance.dialog import plain_key
from voicerail.dialog.base import AgentReply, Dialog
from voicerail.errors import ProtocolError, ProviderError, StreamLimitExceeded
from voicerail.events.model import Event, EventKind, Outcome, Stage
from voicerail.events.store import CallRecord
from voicerail.providers.base import SpeechToText, TextToSpeech, Transcript, closing_stream
from voicerail.session.end_of_turn import EndOfTurnCheck
from voicerail.session.phrase_cache import HOLDING_PHRASE, ulaw_frames
from voicerail.session.playback import PlaybackTracker
from voicerail.session.resume import Resumed, StreamRegistry, admit_stream, take_over
from voicerail.session.runtime import Runtime, current_call_id
from voicerail.session.speculation import SpeculativeSTT
from voicerail.session.text import split_for_speech
from voicerail.state.recorder import CallStateRecorder
from voicerail.state.session import SessionState
from voicerail.turns import policy as tp
from voicerail.wire.stream_limits import StreamGuard, StreamLimits

log = logging.getLogger(__name__)

TWILIO_RATE_HZ = 8000
STT_RATE_HZ = 16000
FRAME_S = 0.02
ULAW_FRAME_NUM_BYTES = 160
TICK_S = 0.05
#: How far the VAD may lag the received audio (a window, a frame and some batching)
#: for an end-of-turn model's answer still to end the turn early.
_VAD_BEHIND_S = 0.1
#: WebSocket close code "Try Again Later" (RFC 6455 §7.4.1, IANA registry).
CLOSE_TRY_AGAIN_LATER = 1013

SendText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class _SpeechToTextResult:
    """One utterance's STT outcome: the final transcript, compute time, audio length."""

    final: Transcript | None
    elapsed_s: float
    audio_s: float


CloseSocket = Callable[[int, str], Awaitable[None]]


class CallSession:
    """One call, from the media stream's first message to its outcome.

    Args:
        runtime: the server's shared parts.
        send_text: sends one WebSocket text message to Twilio.
        close: closes the WebSocket with a code and reason.
        limits: the stream's deadlines and real-time rule (rule 5).
        streams: this process's live stream per CallSid; a stream registered
            there takes over an older one of the same call (``session/resume.py``).
    """

    def __init__(
        self,
        runtime: Runtime,
        send_text: SendText,
        close: CloseSocket,
        limits: StreamLimits | None = None,
        streams: StreamRegistry | None = None,
    ) -> None:
        self.rt = runtime
        self._streams = streams
        self._taken_over = False  # a newer stream of this call replaced this one
        self.call_id = f"vr_{uuid.uuid4().hex[:16]}"
        self._send_text = send_text
        self._close = close
        self._clock = runtime.clock
        self._stream_guard = StreamGuard(limits or StreamLimits(), self._clock.monotonic())
        self.proto = twilio.TwilioStreamProtocol()
        self.dialog: Dialog = runtime.agent.new_dialog(self.call_id)
        self._turn_deadline_s: float | None = None
        self.stt: SpeechToText = runtime.stt
        self.tts: TextToSpeech = runtime.tts
        self._bind_providers()
        self.turns = tp.TurnTaking(runtime.turns, self._clock.monotonic())
        cfg = runtime.audio
        self._vad: SileroVAD | EnergyVAD
        self._batched_vad: BatchedSileroVAD | None = None
        if isinstance(runtime.vad_model, SileroBatcher):
            self._batched_vad = BatchedSileroVAD(
                runtime.vad_model,
                sample_rate_hz=TWILIO_RATE_HZ,
                on_scores=self._on_vad_scores,
                on_error=self._on_vad_error,
            )
            self._vad = self._batched_vad
        elif isinstance(runtime.vad_model, SileroVADModel):
            self._vad = SileroVAD(runtime.vad_model, sample_rate_hz=TWILIO_RATE_HZ)
        else:
            self._vad = EnergyVAD(sample_rate_hz=TWILIO_RATE_HZ)
        self._endpointer = endpointing.Endpointer(
            threshold=cfg.vad_threshold,
            min_speech_s=cfg.min_speech_s,
            silence_s=cfg.endpoint_silence_s,
            window_s=self._vad.frame_num_samples / TWILIO_RATE_HZ,
        )
        self._ring = AudioRingBuffer(max_s=120.0, sample_rate_hz=TWILIO_RATE_HZ)
        self._speculation: SpeculativeSTT[_SpeechToTextResult] | None = None
        if cfg.speculative_stt_after_s is not None:
            speculate_after_s = cfg.speculative_stt_after_s
            if runtime.turn_model is not None and cfg.turn_check_after_s is not None:
                # A turn the model ends must find its transcript already under way.
                speculate_after_s = min(speculate_after_s, cfg.turn_check_after_s)
            self._speculation = SpeculativeSTT(
                self._transcribe_span,
                after_s=speculate_after_s,
                allowed=lambda: not runtime.load.busy(),
            )
        self._end_of_turn: EndOfTurnCheck | None = None
        if runtime.turn_model is not None and cfg.turn_check_after_s is not None:
            self._end_of_turn = EndOfTurnCheck(
                self._turn_probability, self._on_turn_complete, check_after_s=cfg.turn_check_after_s
            )
        # How the last turn end was decided: by "silence" or the "model", the wait
        # from the end of speech (stream seconds), and the model's probability.
        self._last_end: tuple[str, float, float | None] = ("silence", cfg.endpoint_silence_s, None)
        self._turn_model_s: float | None = None  # the last model check's time, seconds
        self._send_lock = asyncio.Lock()
        self._out: asyncio.Queue[tuple[int, bytes | str]] = asyncio.Queue()
        self._generation = 0
        self._playhead_s = 0.0
        self._playback: PlaybackTracker | None = None
        self._playback_done = asyncio.Event()
        self._job: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._unanswered_text = ""
        self._turn_ended_at_s: float | None = None
        self._received_s = 0.0  # seconds of caller audio received
        self._audio_origin = math.inf  # monotonic time of the caller's audio time 0
        self._outcome: Outcome | None = None
        self._ended_by: str | None = None
        self._error: str | None = None
        self._close_code: int | None = None
        self._close_reason: str | None = None  # the peer's own fault, told to the peer
        self._turn_index = 0
        self._admitted = False  # a stream started and was admitted: this is a call
        self._holding: asyncio.TimerHandle | None = None
        self._reply_index = 0  # mark names are unique per call: r{reply}.s{sentence}
        self._recorder: CallStateRecorder | None = None  # state once per turn (state/)
        self._caller_text = ""  # the turn's caller text, for the recorder
        self.record = CallRecord(
            call_id=self.call_id, agent=runtime.agent.name, started_at=self._clock.wall()
        )

    def _bind_providers(self) -> None:
        """This call's routed providers (their events carry ``call_id``)."""
        runtime = self.rt
        if runtime.router is not None:
            routed = runtime.router.bind(
                self.call_id, self._on_router_event, lambda: self._turn_deadline_s
            )
            self.stt = routed.stt or runtime.stt
            self.tts = routed.tts or runtime.tts

    # -- lifecycle -------------------------------------------------------------

    async def run(self, incoming: AsyncIterable[str]) -> CallRecord:
        """Run the call until the caller hangs up, the agent ends it, or it fails."""
        current_call_id.set(self.call_id)  # inherited by every task of this call
        tasks = [
            asyncio.create_task(self._read(incoming), name=f"{self.call_id}-read"),
            asyncio.create_task(self._pace(), name=f"{self.call_id}-pace"),
            asyncio.create_task(self._tick(), name=f"{self.call_id}-tick"),
        ]
        await self._done.wait()
        if self._batched_vad is not None:
            self._batched_vad.close()
        if self._speculation is not None:
            self._speculation.cancel()
        if self._end_of_turn is not None:
            self._end_of_turn.cancel()
        if self._job is not None:
            tasks.append(self._job)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._holding is not None:
            self._holding.cancel()
        if self._admitted and not self._taken_over:
            # A taken-over stream's call goes on in the stream that replaced it.
            self.rt.load.call_ended(self.call_id)
        if self._streams is not None:
            self._streams.ended(self.proto.call_sid, self)
        self._finish()
        if self._recorder is not None:
            await self._recorder.aclose()
        if self._close_code is not None:
            try:
                reason = self._close_reason or self._ended_by or ""
                await self._close(self._close_code, reason)
            except Exception:  # task boundary: the socket may already be gone
                log.debug("close after call end failed", exc_info=True)
        return self.record

    def _end(
        self, ended_by: str, *, error: str | None = None, close_code: int | None = None
    ) -> None:
        if self._done.is_set():
            return
        self._ended_by = ended_by
        if error is not None:
            self._error = error
        self._close_code = close_code
        self._done.set()

    def shut_down(self) -> None:
        """End the call because this worker stops (a drain's deadline passed).

        The call is ``failed`` with ``ended_by: shutdown``, never ``abandoned``: the
        caller did not hang up. The socket closes with 1012 (Service Restart, RFC
        6455 §7.4.1 and the IANA registry), after which Twilio requests the
        ``<Connect action>`` URL.
        """
        self._end("shutdown", error="worker shutdown: drain deadline passed", close_code=1012)

    def take_over(self) -> None:
        """A newer stream of this call started (in this process, or on another
        worker whose claim refused this stream's state write): stop this one
        without ending the call (no ``CallEnded``, no row update), closing the
        socket with 1000 (``state/resume.py`` rules 3 and 4)."""
        self._taken_over = True
        if self._admitted:  # the newer stream counts the call from its own start
            self.rt.load.call_ended(self.call_id)
        self._end("taken_over", close_code=1000)

    @property
    def started(self) -> bool:
        """True once ``start`` arrived and was admitted: from then on this is a
        call (rule 5)."""
        return self._admitted

    def _finish(self) -> None:
        if self._taken_over and self.started:
            log.info("call %s: stream replaced by a newer one", self.call_id)
            return
        if not self.started:
            # Not a call (rule 5): nothing recorded; one line says why it closed.
            log.info(
                "media stream %s closed before 'start' (%s): %s",
                self.call_id,
                self._ended_by,
                self._error or "no error",
            )
            return
        if self._error is not None:
            outcome = Outcome.FAILED
        elif self._outcome is not None:
            outcome = self._outcome
        elif self._ended_by == "agent":
            outcome = Outcome.COMPLETED
        else:
            outcome = Outcome.ABANDONED
        # A dialog with a CRM queues its call-end writes (summary, disposition, lead).
        if (call_ended := getattr(self.dialog, "on_call_ended", None)) is not None:
            call_ended(str(outcome), self._turn_index)
        now = self._clock.wall()
        self._emit(
            EventKind.CALL_ENDED,
            Stage.TELEPHONY,
            outcome=str(outcome),
            data={"ended_by": self._ended_by, "error": self._error, "turns": self._turn_index},
        )
        data = dict(self.record.data)
        data["turns"] = self._turn_index
        self.record = CallRecord(
            call_id=self.call_id,
            agent=self.record.agent,
            started_at=self.record.started_at,
            ended_at=now,
            outcome=str(outcome),
            error=self._error,
            call_sid=self.proto.call_sid,
            stream_sid=self.proto.stream_sid,
            data=data,
        )
        self.rt.events.save_call(self.record)
        if outcome is Outcome.FAILED:
            log.warning("call %s failed (%s): %s", self.call_id, self._ended_by, self._error)

    # -- inbound ---------------------------------------------------------------

    async def _read(self, incoming: AsyncIterable[str]) -> None:
        try:
            async for text in incoming:
                self.proto.receive_data(text)
                for message in self.proto.events_received():
                    await self._on_message(message)
        except ProtocolError as exc:
            self._on_protocol_error(exc)
        except Exception as exc:  # task boundary: record, fail this call only
            log.exception("call %s: reader failed", self.call_id)
            self._end("error", error=f"{type(exc).__name__}: {exc}", close_code=1011)
        finally:
            self._end("caller")

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        """End the stream for the peer's fault; a broken limit names itself (rule 5)."""
        limit = exc.limit if isinstance(exc, StreamLimitExceeded) else None
        if self.started:
            self._emit(
                EventKind.PROTOCOL_ERROR,
                Stage.TELEPHONY,
                outcome="error",
                data={"error": exc.message, "event": exc.event, "limit": limit},
            )
        error = f"protocol error: {exc.message}"
        if not self._done.is_set():
            self._close_reason = error  # only the peer's own fault goes back to it
        self._end(limit or "protocol_error", error=error, close_code=1008)

    async def _on_message(self, message: twilio.InboundMessage) -> None:
        now = self._clock.monotonic()
        if isinstance(message, twilio.Media):
            self._stream_guard.receive_media(len(message.payload), now)
            pcm = ulaw_to_pcm16(message.payload)
            # The caller's audio clock: a frame's last sample exists at origin +
            # received seconds; the earliest frame relative to that fixes the origin.
            self._received_s += len(pcm) / (2 * TWILIO_RATE_HZ)
            self._audio_origin = min(self._audio_origin, now - self._received_s)
            self._ring.append(pcm)
            if self._batched_vad is not None:
                self._batched_vad.feed(pcm, now)  # scores arrive in _on_vad_scores
            else:
                self._on_speech_probabilities(self._vad.process(pcm), now)
        elif isinstance(message, twilio.Mark):
            self._on_mark(message.name, now)
        elif isinstance(message, twilio.Start):
            self._stream_guard.receive_start(now)
            await self._on_start(message)
        elif isinstance(message, twilio.DTMF):
            # compliance/dialog.py: during a PCI pause the key goes to the card entry only;
            # no key is recorded (16 events with a digit each would rebuild a card).
            screen = getattr(self.dialog, "receive_dtmf", plain_key)
            key = screen(message.digit)
            self._emit(EventKind.DTMF_RECEIVED, Stage.TELEPHONY, data={"pci": key.paused})
            await self._apply(self.turns.handle(tp.DtmfPressed(key.deliver), now))
        elif isinstance(message, twilio.Stop):
            self._stream_guard.receive_stop()
            await self._apply(self.turns.handle(tp.CallerHungUp(), now))

    async def _on_start(self, start: twilio.Start) -> None:
        # Admission (session/load.py): a stream the webhook announced holds a slot
        # under its CallSid; one beyond capacity is refused before it is a call,
        # unless it carries on an accepted call (session/resume.py).
        decision = await admit_stream(self.rt, start.call_sid)
        if self._done.is_set():
            return  # the socket closed while the state was read
        if not decision.admit:
            reason = f"refused: {decision.reason}"
            self._emit(
                EventKind.CALL_REFUSED,
                Stage.TELEPHONY,
                outcome="refused",
                data={"where": "stream", "reason": decision.reason},
                pii={"call_sid": start.call_sid},
            )
            log.warning("call %s: stream refused (%s)", self.call_id, decision.reason)
            self._end(reason, close_code=CLOSE_TRY_AGAIN_LATER)
            return
        if self._streams is not None:
            self._streams.started(start.call_sid, self)
        resumed = await take_over(self.rt, start.call_sid)
        if self._done.is_set():
            return  # the socket closed while the state was read
        self._admitted = True
        if resumed is not None:
            self._on_resumed_start(start, resumed)
            return
        self.rt.load.call_started(self.call_id, reservation=start.call_sid)
        self.record = CallRecord(
            call_id=self.call_id,
            agent=self.record.agent,
            started_at=self._clock.wall(),
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
            data={
                "custom_parameters": sorted(start.custom_parameters),
                "worker": str(self.rt.worker),  # for state/lost_calls.py
                "worker_pid": self.rt.worker.pid,
            },
        )
        self._emit(EventKind.CALL_STARTED, Stage.TELEPHONY)
        self.rt.events.save_call(self.record)
        if self.rt.state is not None:
            first = SessionState(self.call_id, call_sid=start.call_sid, worker=str(self.rt.worker))
            self._recorder = CallStateRecorder(
                self.rt.state, first, self._clock.wall, on_conflict=self.take_over
            )
        self._on_stream_started(start)
        self._start_job(self._greet())

    def _on_stream_started(self, start: twilio.Start) -> None:
        self._emit(
            EventKind.STREAM_STARTED,
            Stage.TELEPHONY,
            data={
                "stream_sid": start.stream_sid,
                "tracks": list(start.tracks),
                "encoding": start.media_format.encoding,
                "sample_rate_hz": start.media_format.sample_rate_hz,
                "worker_pid": self.rt.worker.pid,
            },
            pii={"call_sid": start.call_sid, "custom_parameters": start.custom_parameters},
        )
        # A dialog with a CRM starts the caller lookup now; the greeting does not wait.
        if (caller_known := getattr(self.dialog, "caller_known", None)) is not None:
            caller_known(start.custom_parameters.get("from", ""))

    def _on_resumed_start(self, start: twilio.Start, resumed: Resumed) -> None:
        """Carry the call on (``session/resume.py``): its id, dialog, turns, outcome
        and booking; the caller hears a recap instead of the greeting."""
        state = resumed.state
        self.call_id = state.call_id
        current_call_id.set(self.call_id)  # tasks started from here on
        self.dialog = resumed.dialog
        self._bind_providers()
        self._turn_index = max(0, len(state.turns) - 1)
        self._outcome = Outcome(state.outcome) if state.outcome else None
        self.rt.load.call_started(self.call_id, reservation=start.call_sid)
        worker = self.rt.worker
        self.record = resumed.record(start.stream_sid, self.rt.agent.name, worker)
        self.rt.events.save_call(self.record)
        assert self.rt.state is not None  # take_over() resumes only with a state store
        self._recorder = CallStateRecorder(
            self.rt.state, state, self._clock.wall, on_conflict=self.take_over
        )
        data = resumed.event_data(worker, self._turn_index)
        self._emit(EventKind.CALL_RESUMED, Stage.TELEPHONY, data=data)
        self._on_stream_started(start)
        self._start_job(self._greet_resumed())

    def _on_vad_scores(self, scores: list[tuple[float, float]]) -> None:
        """Batched VAD results, in order, each with its frame's arrival time."""
        if self._done.is_set():
            return
        try:
            for probability, arrived in scores:
                self._on_speech_probabilities((probability,), arrived)
        except Exception as exc:  # callback boundary: fail this call only
            log.exception("call %s: turn taking failed", self.call_id)
            self._end("error", error=f"{type(exc).__name__}: {exc}", close_code=1011)

    def _on_vad_error(self, error: BaseException) -> None:
        log.error("call %s: vad batch failed: %s", self.call_id, error)
        self._end("error", error=f"vad failed: {type(error).__name__}: {error}", close_code=1011)

    def _on_speech_probabilities(self, probabilities: Sequence[float], now: float) -> None:
        endpointer = self._endpointer
        for probability in probabilities:
            for change in endpointer.process(probability):
                if isinstance(change, endpointing.SpeechStarted):
                    self._emit(EventKind.USER_TURN_STARTED, Stage.VAD, data={"at_s": change.at_s})
                    self._apply_now(self.turns.handle(tp.SpeechStarted(), now))
                else:
                    self._last_end = ("silence", change.at_s - change.speech_end_s, None)
                    event = tp.SpeechEnded(change.speech_start_s, change.speech_end_s)
                    self._apply_now(self.turns.handle(event, now))
            if self._speculation is not None:
                self._speculation.observe(
                    endpointer.speech_start_s, endpointer.pause_start_s, endpointer.now_s
                )
            if self._end_of_turn is not None:
                self._end_of_turn.observe(
                    endpointer.speech_start_s, endpointer.pause_start_s, endpointer.now_s
                )

    async def _turn_probability(self, speech_start_s: float, pause_start_s: float) -> float:
        """The end-of-turn model's view of the utterance from its start to now."""
        assert self.rt.turn_model is not None
        started = self._clock.monotonic()
        start_s = max(0.0, speech_start_s - self.rt.audio.preroll_s)
        pcm16k = resample(self._ring.since(start_s), TWILIO_RATE_HZ, STT_RATE_HZ)
        probability = await self.rt.turn_model.probability_async(np.frombuffer(pcm16k, dtype="<i2"))
        self._turn_model_s = self._clock.monotonic() - started
        return probability

    def _on_turn_complete(
        self, speech_start_s: float, pause_start_s: float, probability: float
    ) -> None:
        """The model says the caller finished: end the turn where the pause began."""
        endpointer = self._endpointer
        if endpointer.speech_start_s != speech_start_s or endpointer.pause_start_s != pause_start_s:
            return  # the caller spoke again, or the window already ended the turn
        if self._received_s - endpointer.now_s > _VAD_BEHIND_S:
            # Audio arrived that the VAD has not scored yet (a loaded server): the
            # caller may already be speaking again, so the window decides instead.
            # Under load this had split "next Tuesday | at three" into two turns.
            return
        change = endpointer.end_now()
        if change is None or self._done.is_set():
            return
        self._last_end = ("model", change.at_s - change.speech_end_s, probability)
        event = tp.SpeechEnded(change.speech_start_s, change.speech_end_s)
        self._apply_now(self.turns.handle(event, self._clock.monotonic()))

    def _on_mark(self, name: str, now: float) -> None:
        tracker = self._playback
        segment = tracker.on_mark(name, now) if tracker is not None else None
        self._emit(
            EventKind.MARK_PLAYED,
            Stage.TELEPHONY,
            data={"mark": name, "current": segment is not None},
        )
        if tracker is not None and tracker.all_heard:
            self._playback_done.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            expired = self._stream_guard.expired(self._clock.monotonic())
            if expired is not None:
                self._on_protocol_error(expired)
                return
            await self._apply(self.turns.handle(tp.Tick(), self._clock.monotonic()))

    # -- actions ---------------------------------------------------------------

    def _apply_now(self, actions: list[tp.Action]) -> None:
        """Execute actions from synchronous audio code; sends are scheduled."""
        if actions:
            asyncio.get_running_loop().create_task(self._apply(actions))

    async def _apply(self, actions: list[tp.Action]) -> None:
        for action in actions:
            if isinstance(action, tp.EndUserTurn):
                self._turn_ended_at_s = self._clock.monotonic()
                self._turn_deadline_s = self._turn_ended_at_s + self.rt.turn_budget_s
                self._start_job(self._answer(action))
                self._arm_holding_phrase()
            elif isinstance(action, tp.BargeIn):
                await self._barge_in()
            elif isinstance(action, tp.CancelReply):
                self._cancel_job()
            elif isinstance(action, tp.Reprompt):
                self._start_job(self._reprompt(action.count))
            elif isinstance(action, tp.DeliverDtmf):
                self._turn_ended_at_s = self._clock.monotonic()
                self._start_job(self._reply_to_dtmf(action.digit))
            elif isinstance(action, tp.EndCall):
                if action.reason == "silence":
                    self._start_job(self._say_goodbye_after_silence())
                else:
                    self._end("caller")

    def _start_job(self, coro: Awaitable[None]) -> None:
        self._cancel_job()
        self._job = asyncio.get_running_loop().create_task(self._guard(coro))

    def _cancel_job(self) -> None:
        if self._holding is not None:  # the reply it stood in for is gone
            self._holding.cancel()
            self._holding = None
        if self._job is not None and not self._job.done():
            self._job.cancel()
        self._job = None

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:  # task boundary: no fallback left for this call
            self._emit(
                EventKind.PROVIDER_ATTEMPTED,
                None,
                provider=exc.provider,
                outcome="error",
                error_class=str(exc.error_class),
                data={"status": exc.status, "error": str(exc)},
            )
            self._end("error", error=f"provider failed: {exc}", close_code=1011)
        except Exception as exc:  # task boundary: record, fail this call only
            log.exception("call %s: agent job failed", self.call_id)
            self._end("error", error=f"{type(exc).__name__}: {exc}", close_code=1011)

    def _arm_holding_phrase(self) -> None:
        """Play the holding phrase if this turn's reply is late (``holding_after_s``)."""
        after_s = self.rt.audio.holding_after_s
        if after_s is None or self.rt.phrases is None:
            return
        audio = self.rt.phrases.get_quietly(HOLDING_PHRASE)
        if audio is None:
            return
        turn_ended_at_s = self._turn_ended_at_s

        def hold() -> None:
            self._holding = None
            if self._turn_ended_at_s != turn_ended_at_s or not self._streaming:
                return  # the reply started, or another turn began
            generation = self._generation
            for k in range(0, len(audio), ULAW_FRAME_NUM_BYTES):
                self._out.put_nowait((generation, audio[k : k + ULAW_FRAME_NUM_BYTES]))
            self._out.put_nowait((generation, f"hold{self._turn_index}"))
            self._emit(EventKind.HOLDING_PHRASE_PLAYED, Stage.TTS, data={"turn": self._turn_index})

        self._holding = asyncio.get_running_loop().call_later(after_s, hold)

    async def _barge_in(self) -> None:
        now = self._clock.monotonic()
        tracker, self._playback = self._playback, None
        self._generation += 1
        self._playhead_s = now
        self._cancel_job()
        if self._streaming:
            self.proto.send_clear()
            await self._flush()
        heard = tracker.heard_text(now) if tracker is not None else ""
        full = tracker.full_text if tracker is not None else ""
        self.dialog.on_agent_heard(heard, full)
        if self._recorder is not None:
            self._recorder.heard(heard)
        self._emit(
            EventKind.BARGE_IN,
            Stage.TELEPHONY,
            data={"heard_words": len(heard.split()), "full_words": len(full.split())},
            pii={"heard_text": heard, "full_text": full},
        )

    # -- agent jobs ------------------------------------------------------------

    async def _greet(self) -> None:
        started = self._clock.monotonic()
        reply = await self.dialog.start()
        self._record_decision(reply, started, reason="greeting")
        await self._speak(reply)

    async def _greet_resumed(self) -> None:
        started = self._clock.monotonic()
        resume = getattr(self.dialog, "resume", None)
        reply = await resume() if resume is not None else await self.dialog.start()
        self._record_decision(reply, started, reason="resumed")
        await self._speak(reply)

    async def _answer(self, turn: tp.EndUserTurn) -> None:
        self._turn_index += 1
        decided_by, endpoint_wait_s, turn_probability = self._last_end
        spec = self._speculation
        # How late the end is seen against the caller's audio clock: 0 when every
        # frame is read on arrival (up to a frame and a VAD window of rounding).
        due = self._audio_origin + turn.speech_end_s + endpoint_wait_s
        inbound_lag_s = self._clock.monotonic() - due if math.isfinite(due) else None
        if inbound_lag_s is not None:
            self.rt.load.observe_inbound_lag(inbound_lag_s)
        self._emit(
            EventKind.USER_TURN_ENDED,
            Stage.VAD,
            data={
                "turn": self._turn_index,
                "speech_start_s": turn.speech_start_s,
                "speech_end_s": turn.speech_end_s,
                "endpoint_wait_s": round(endpoint_wait_s, 4),
                "ended_by": decided_by,
                "turn_probability": turn_probability,
                "turn_model_s": None
                if self._turn_model_s is None
                else round(self._turn_model_s, 4),
                "inbound_lag_s": None if inbound_lag_s is None else round(inbound_lag_s, 4),
                # per call so far: STT speculations started, and used by the turn
                # ends before this one
                "speculations": None if spec is None else [spec.started, spec.used],
            },
        )
        self._turn_model_s = None  # each turn reports its own model checks only
        waited_from = self._clock.monotonic()
        task = None
        if self._speculation is not None:
            task = self._speculation.take(turn.speech_start_s, turn.speech_end_s)
        if task is not None and task.cancelled():
            task = None
        try:
            if task is not None:
                result = await task
            else:
                result = await self._transcribe_span(turn.speech_start_s, turn.speech_end_s)
        except ProviderError as exc:
            # No recognizer answered in time: the caller is asked again, as for an
            # unintelligible turn, instead of losing the call.
            self._emit(
                EventKind.TRANSCRIPT_FINAL,
                Stage.STT,
                provider=exc.provider,
                outcome="error",
                error_class=str(exc.error_class),
                data={"turn": self._turn_index, "error": str(exc)},
            )
            reply = await self.dialog.on_user_turn("", None)
            self._record_decision(reply, self._clock.monotonic(), reason="stt_failed")
            await self._speak(reply)
            return
        text, confidence = self._record_transcript(
            result, speculative=task is not None, waited_s=self._clock.monotonic() - waited_from
        )
        if not text:
            await self._apply(self.turns.handle(tp.TurnDiscarded(), self._clock.monotonic()))
            return
        text = f"{self._unanswered_text} {text}".strip()
        self._unanswered_text = text
        self._caller_text = text
        started = self._clock.monotonic()
        reply = await self.dialog.on_user_turn(text, confidence)
        self._record_decision(reply, started, reason="user_turn")
        await self._speak(reply)

    async def _transcribe_span(
        self, speech_start_s: float, speech_end_s: float
    ) -> _SpeechToTextResult:
        """Run STT on the call audio between two stream times (plus pre-roll)."""
        preroll_s = self.rt.audio.preroll_s
        start_s = max(0.0, speech_start_s - preroll_s)
        keep = int((speech_end_s + preroll_s - start_s) * TWILIO_RATE_HZ) * 2
        pcm16k = resample(self._ring.since(start_s)[: max(keep, 0)], TWILIO_RATE_HZ, STT_RATE_HZ)

        async def audio() -> AsyncIterator[bytes]:
            yield pcm16k

        started = self._clock.monotonic()
        final = None
        transcripts = self.stt.transcribe(audio(), sample_rate_hz=STT_RATE_HZ)
        async with closing_stream(transcripts):
            async for transcript in transcripts:
                if transcript.is_final:
                    final = transcript
        audio_s = len(pcm16k) / 2 / STT_RATE_HZ
        return _SpeechToTextResult(final, self._clock.monotonic() - started, audio_s)

    def _record_transcript(
        self, result: _SpeechToTextResult, *, speculative: bool, waited_s: float
    ) -> tuple[str, float | None]:
        final = result.final
        text = final.text.strip() if final is not None else ""
        confidence = final.confidence if final is not None else None
        # compliance/dialog.py: spoken cards and personal data redacted before recording.
        screen = getattr(self.dialog, "screen_transcript", None)
        recorded, text = screen(text) if screen is not None else (text, text)
        self._emit(
            EventKind.TRANSCRIPT_FINAL,
            Stage.STT,
            provider=final.usage.provider if final and final.usage else self.stt.name,
            model=final.usage.model if final and final.usage else self.stt.model,
            latency_s=result.elapsed_s,
            outcome="ok",
            data={
                "turn": self._turn_index,
                "confidence": confidence,
                "num_words": len(text.split()),
                "audio_s": result.audio_s,
                "speculative": speculative,
                "wait_after_turn_end_s": waited_s,
            },
            pii={"text": recorded},
        )
        return text, confidence

    async def _reprompt(self, count: int) -> None:
        self._emit(EventKind.REPROMPTED, Stage.DIALOG, data={"count": count})
        started = self._clock.monotonic()
        reply = await self.dialog.on_silence(count)
        self._record_decision(reply, started, reason="silence")
        await self._speak(reply)

    async def _say_goodbye_after_silence(self) -> None:
        started = self._clock.monotonic()
        reply = await self.dialog.on_silence(self.turns.state.reprompts + 1, final=True)
        self._record_decision(reply, started, reason="silence_hangup")
        await self._speak(reply, end_reason="silence")

    async def _reply_to_dtmf(self, digit: str) -> None:
        started = self._clock.monotonic()
        reply = await self.dialog.on_dtmf(digit)
        self._record_decision(reply, started, reason="dtmf")
        await self._speak(reply)

    def _record_decision(self, reply: AgentReply, started_s: float, *, reason: str) -> None:
        data: dict[str, Any] = {
            "reason": reason,
            "intent": reply.intent,
            "node": reply.node,
            "end_call": reply.end_call,
            "handoff": reply.handoff,
            **reply.data,
        }
        self._emit(
            EventKind.DIALOG_DECIDED,
            Stage.DIALOG,
            latency_s=self._clock.monotonic() - started_s,
            outcome=str(reply.outcome) if reply.outcome else None,
            data=data,
            pii={"agent_text": reply.text, **reply.pii},
        )
        if reply.booking_id:
            self.record.data["booking_id"] = reply.booking_id
            self._emit(EventKind.BOOKING_WRITTEN, Stage.CRM, data={"booking_id": reply.booking_id})
        if reply.handoff:
            self._emit(
                EventKind.HANDOFF_REQUESTED,
                Stage.HANDOFF,
                data={"intent": reply.intent, "node": reply.node},
            )
            self.record.data["handoff"] = True
        # The first outcome sticks, except that a later handoff overrides it.
        if (reply.outcome is not None and self._outcome is None) or (
            reply.outcome is Outcome.HANDOFF
        ):
            self._outcome = reply.outcome
        self._record_state(reply)

    def _record_state(self, reply: AgentReply) -> None:
        """Hand this turn to the state recorder (written in the background)."""
        if self._recorder is None:
            return
        snapshot = getattr(self.dialog, "snapshot", None)  # a dialog that can be restored
        self._recorder.turn(
            caller_text=self._caller_text,
            agent_text=reply.text,
            outcome=str(self._outcome) if self._outcome is not None else None,
            booking_id=self.record.data.get("booking_id"),
            dialog=snapshot() if snapshot is not None else None,
            providers={"stt": self.stt.name, "tts": self.tts.name},
        )
        self._caller_text = ""

    # -- speaking --------------------------------------------------------------

    async def _speak(self, reply: AgentReply, *, end_reason: str | None = None) -> None:
        """Synthesize ``reply`` sentence by sentence, queue it, wait until heard."""
        now = self._clock.monotonic()
        tracker = PlaybackTracker(now)
        self._playback = tracker
        self._playback_done = asyncio.Event()
        generation = self._generation
        self._reply_index += 1
        first_audio = True
        phrases = self.rt.phrases
        texts = split_for_speech(
            reply.text,
            self.rt.audio.first_clause_min_words,
            ready=(lambda sentence: sentence in phrases)
            if phrases is not None
            else lambda s: False,
        )
        for index, sentence in enumerate(texts):
            started = self._clock.monotonic()
            num_bytes = 0
            try:
                async with closing_stream(self._synthesize(sentence)) as pieces:
                    async for frames in pieces:
                        if first_audio:
                            first_audio = False
                            self._on_first_audio(started)
                        for k in range(0, len(frames), ULAW_FRAME_NUM_BYTES):
                            frame = frames[k : k + ULAW_FRAME_NUM_BYTES]
                            self._out.put_nowait((generation, frame))
                        num_bytes += len(frames)
            except ProviderError as exc:
                # No TTS could speak this sentence: the call goes on without it
                # (an accepted call is never failed by a provider); the caller
                # hears the rest of the reply, and the event says what was lost.
                self._emit(
                    EventKind.PROVIDER_ATTEMPTED,
                    Stage.TTS,
                    provider=exc.provider,
                    outcome="error",
                    error_class=str(exc.error_class),
                    data={"error": str(exc), "sentence_skipped": index},
                )
                log.warning("call %s: sentence %d not spoken: %s", self.call_id, index, exc)
            mark = f"r{self._reply_index}.s{index}"
            tracker.add_segment(mark, sentence, num_bytes / TWILIO_RATE_HZ)
            self._out.put_nowait((generation, mark))
        tracker.finished_queueing = True
        if tracker.all_heard:
            self._playback_done.set()
        await self._playback_done.wait()
        await self._apply(self.turns.handle(tp.AgentFinishedSpeaking(), self._clock.monotonic()))
        if end_reason is not None:
            self._end(end_reason, close_code=1000)
        elif reply.end_call:
            self._end("agent", close_code=1000)
        elif reply.data.get("pci") == "twilio_pay":  # compliance/pay_http.py: the call goes
            self.take_over()  # to Twilio's <Pay> and comes back to a new stream

    def _on_first_audio(self, synth_started_s: float) -> None:
        now = self._clock.monotonic()
        self._unanswered_text = ""
        since_turn = now - self._turn_ended_at_s if self._turn_ended_at_s is not None else None
        self._emit(
            EventKind.TTS_FIRST_AUDIO,
            Stage.TTS,
            provider=self.tts.name,
            model=self.tts.model,
            latency_s=now - synth_started_s,
            data={"turn": self._turn_index, "since_turn_end_s": since_turn},
        )
        self._turn_ended_at_s = None
        self._turn_deadline_s = None  # later sentences play while they are synthesized
        self._apply_now(self.turns.handle(tp.AgentStartedSpeaking(), now))

    def _is_cached(self, sentence: str) -> bool:
        return self.rt.phrases is not None and sentence in self.rt.phrases

    async def _synthesize(self, sentence: str) -> AsyncIterator[bytes]:
        """Yield whole 20 ms μ-law frames (concatenated) for one sentence: from the
        phrase cache when the sentence is fixed, else from the TTS."""
        cached = self.rt.phrases.get(sentence) if self.rt.phrases is not None else None
        if cached is not None:
            yield cached
            return
        async with closing_stream(ulaw_frames(self.tts.synthesize(sentence))) as frames:
            async for piece in frames:
                yield piece

    # -- outbound --------------------------------------------------------------

    async def _pace(self) -> None:
        lead_s = self.rt.audio.playback_lead_s
        per_message = max(1, self.rt.audio.frames_per_media)
        carried: tuple[int, bytes | str] | None = None
        while True:
            if carried is not None:
                (generation, item), carried = carried, None
            else:
                generation, item = await self._out.get()
            if generation != self._generation:
                continue
            if not self._streaming:
                continue
            if isinstance(item, str):
                self.proto.send_mark(item)
                await self._flush()
                continue
            frames = [item]
            while len(frames) < per_message and not self._out.empty():
                queued = self._out.get_nowait()
                if queued[0] == generation and isinstance(queued[1], bytes):
                    frames.append(queued[1])
                else:
                    carried = queued  # a mark or a new reply: handled next
                    break
            now = self._clock.monotonic()
            self._playhead_s = max(self._playhead_s, now)
            delay = self._playhead_s - lead_s - now
            if delay > 0:
                await asyncio.sleep(delay)
            if generation != self._generation or not self._streaming:
                continue
            self.proto.send_media(b"".join(frames) if len(frames) > 1 else item)
            await self._flush()
            self._playhead_s += FRAME_S * len(frames)

    @property
    def _streaming(self) -> bool:
        """Sending is allowed: after ``start`` and before ``stop``."""
        return self.proto.state is twilio.StreamState.STREAMING

    async def _flush(self) -> None:
        async with self._send_lock:
            for text in self.proto.data_to_send():
                await self._send_text(text)

    # -- events ----------------------------------------------------------------

    def _on_router_event(self, event: Event) -> None:
        """Record a routing event and add its cost to the call's per-provider total,
        so cost questions read one summary row per call."""
        self.rt.events.append(event)
        cost = event.data.get("cost_usd")
        if cost is not None and event.provider is not None:
            totals = self.record.data.setdefault("cost_usd_by_provider", {})
            totals[event.provider] = totals.get(event.provider, 0.0) + float(cost)

    def _emit(self, kind: EventKind, stage: Stage | None, **fields: Any) -> Event:
        event = Event(
            call_id=self.call_id,
            kind=kind,
            at_wall=self._clock.wall(),
            at_mono=self._clock.monotonic(),
            stage=stage,
            **fields,
        )
        screen = getattr(self.dialog, "screen_event", None)  # compliance/: redaction
        return self.rt.events.append(screen(event) if screen is not None else event)
