"""The call driver: runs one call's turn loop over a media transport.

It coordinates pieces that each do one thing (issue 15 §1): the transport seam
(``wire/transport.py``: Twilio, Telnyx, Plivo, Vonage), inbound audio
(``session/inbound.py``: media clock, VAD, endpointer, ring), turn starts and
ends (``session/turn_ends.py``: endpointer, speculative STT, end-of-turn model),
the dialog jobs and their decision records (``session/jobs.py``), speaking a
reply (``session/speaking.py``: sentences, marks, holding phrase, barge-in),
outbound pacing (``session/playout.py``), what was heard
(``session/playback.py``), the STT and TTS calls (``session/speech_io.py``), a
call's start and end record (``session/lifecycle.py``, with resume in
``session/resume.py``) and the outcome rules (``turns/outcome.py``). What is
left here is the coordination: the call's tasks, transport events to pieces,
policy actions to jobs, the call's end, and the events.

It is the only place where the pure parts meet I/O, and it is boring on
purpose: the wire codec parses, the audio pipeline detects speech, the
turn-taking policy decides, and the driver executes the actions it is handed
(transcribe, answer, speak, clear, hang up) and records every step as an event.

Rules:

1. One :class:`CallSession` per call; it owns that call's transport, inbound
   audio, playout, dialog and the pieces above. Nothing is shared between
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
5. A call exists from the transport's ``CallAnswered`` (Twilio's ``start``) on:
   only then is it recorded (``CallStarted`` and its row) and counted; a socket
   that never answers leaves no call behind.
   The stream's deadlines and real-time rule (``wire/stream_limits.py``) are checked
   on every ``media`` and every tick; a broken one ends the stream with 1008.
6. Every call that ends with an error writes one log line naming the call and
   the cause.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from voicerail.compliance.dialog import plain_key
from voicerail.dialog.base import Dialog
from voicerail.errors import ProtocolError, ProviderError, StreamLimitExceeded
from voicerail.events.model import Event, EventKind, Outcome, Stage
from voicerail.events.store import CallRecord
from voicerail.providers.base import SpeechToText, TextToSpeech
from voicerail.session.inbound import InboundAudio
from voicerail.session.jobs import DialogJobs
from voicerail.session.lifecycle import CallLifecycle
from voicerail.session.playout import Playout, SendFrame
from voicerail.session.resume import StreamRegistry
from voicerail.session.runtime import Runtime, current_call_id
from voicerail.session.speaking import Speaker
from voicerail.session.turn_ends import TurnEnds
from voicerail.state.recorder import CallStateRecorder
from voicerail.turns import policy as tp
from voicerail.wire.stream_limits import StreamGuard, StreamLimits
from voicerail.wire.transport import (
    CALL_RATE_HZ,
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    MediaTransport,
    PlaybackMarked,
    TransportEvent,
)
from voicerail.wire.twilio_transport import TwilioTransport

log = logging.getLogger(__name__)

#: The call's audio rate (transports convert to and from it).
TWILIO_RATE_HZ = CALL_RATE_HZ
TICK_S = 0.05


CloseSocket = Callable[[int, str], Awaitable[None]]


class CallSession:
    """One call, from the media stream's first message to its outcome.

    Args:
        runtime: the server's shared parts.
        send_text: sends one WebSocket frame (text or binary) to the provider.
        close: closes the WebSocket with a code and reason.
        limits: the stream's deadlines and real-time rule (rule 5).
        streams: this process's live stream per CallSid; a stream registered
            there takes over an older one of the same call (``session/resume.py``).
        transport: the provider's protocol (:class:`TwilioTransport` when None).
    """

    def __init__(
        self,
        runtime: Runtime,
        send_text: SendFrame,
        close: CloseSocket,
        limits: StreamLimits | None = None,
        streams: StreamRegistry | None = None,
        transport: MediaTransport | None = None,
    ) -> None:
        self.rt = runtime
        self._streams = streams
        self._taken_over = False  # a newer stream of this call replaced this one
        self.call_id = f"vr_{uuid.uuid4().hex[:16]}"
        self._send_text = send_text
        self._close = close
        self._clock = runtime.clock
        self._stream_guard = StreamGuard(limits or StreamLimits(), self._clock.monotonic())
        self.transport: MediaTransport = transport if transport is not None else TwilioTransport()
        # A transport that shows the call to its caller (the browser page) sees the
        # recorded events; what it queues goes out within a tick.
        self._observe: Callable[[Event], None] | None = getattr(
            self.transport, "observe_event", None
        )
        self.dialog: Dialog = runtime.agent.new_dialog(self.call_id)
        self._turn_deadline_s: float | None = None
        self.stt: SpeechToText = runtime.stt
        self.tts: TextToSpeech = runtime.tts
        self._bind_providers()
        self._jobs = DialogJobs(self)
        self._speaker = Speaker(self)
        self._lifecycle = CallLifecycle(self)
        self.turns = tp.TurnTaking(runtime.turns, self._clock.monotonic())
        cfg = runtime.audio
        self._inbound = InboundAudio(
            runtime.vad_model, cfg, on_scores=self._on_vad_scores, on_error=self._on_vad_error
        )
        self._turn_ends = TurnEnds(self)
        self._playout = Playout(
            self.transport,
            send_text,
            self._clock,
            lead_s=cfg.playback_lead_s,
            frames_per_message=cfg.frames_per_media,
        )
        self._job: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._unanswered_text = ""
        self._turn_ended_at_s: float | None = None
        self._outcome: Outcome | None = None
        self._ended_by: str | None = None
        self._error: str | None = None
        self._close_code: int | None = None
        self._close_reason: str | None = None  # the peer's own fault, told to the peer
        self._turn_index = 0
        self._admitted = False  # a stream started and was admitted: this is a call
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

    async def run(self, incoming: AsyncIterable[str | bytes]) -> CallRecord:
        """Run the call until the caller hangs up, the agent ends it, or it fails."""
        current_call_id.set(self.call_id)  # inherited by every task of this call
        tasks = [
            asyncio.create_task(self._read(incoming), name=f"{self.call_id}-read"),
            asyncio.create_task(self._playout.run(), name=f"{self.call_id}-pace"),
            asyncio.create_task(self._tick(), name=f"{self.call_id}-tick"),
        ]
        await self._done.wait()
        self._inbound.close()
        self._turn_ends.cancel()
        if self._job is not None:
            tasks.append(self._job)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._speaker.cancel_holding()
        if self._admitted and not self._taken_over:
            # A taken-over stream's call goes on in the stream that replaced it.
            self.rt.load.call_ended(self.call_id)
        if self._streams is not None:
            self._streams.ended(self.transport.call_ref, self)
        self._lifecycle.finish()
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

    # -- inbound ---------------------------------------------------------------

    async def _read(self, incoming: AsyncIterable[str | bytes]) -> None:
        try:
            async for data in incoming:
                self.transport.receive_data(data)
                for message in self.transport.events_received():
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

    async def _on_message(self, message: TransportEvent) -> None:
        now = self._clock.monotonic()
        if isinstance(message, AudioReceived):
            pcm = message.pcm
            # The guard counts samples at 8 kHz (one μ-law byte each).
            self._stream_guard.receive_media(len(pcm) // 2, now)
            # The caller's audio clock: a frame's last sample exists at origin +
            # received seconds; the earliest frame relative to that fixes the origin.
            probabilities = self._inbound.receive(pcm, now)  # batched: _on_vad_scores
            if probabilities:
                self._turn_ends.receive_probabilities(probabilities, now)
        elif isinstance(message, PlaybackMarked):
            self._speaker.on_mark(message.name, now)
        elif isinstance(message, CallAnswered):
            self._stream_guard.receive_start(now)
            await self._lifecycle.start(message)
        elif isinstance(message, DigitPressed):
            # compliance/dialog.py: during a PCI pause the key goes to the card entry only;
            # no key is recorded (16 events with a digit each would rebuild a card).
            screen = getattr(self.dialog, "receive_dtmf", plain_key)
            key = screen(message.digit)
            self._emit(EventKind.DTMF_RECEIVED, Stage.TELEPHONY, data={"pci": key.paused})
            await self._apply(self.turns.handle(tp.DtmfPressed(key.deliver), now))
        elif isinstance(message, CallHungUp):
            self._stream_guard.receive_stop()
            await self._apply(self.turns.handle(tp.CallerHungUp(), now))

    def _on_vad_scores(self, scores: list[tuple[float, float]]) -> None:
        """Batched VAD results, in order, each with its frame's arrival time."""
        if self._done.is_set():
            return
        try:
            for probability, arrived in scores:
                self._turn_ends.receive_probabilities((probability,), arrived)
        except Exception as exc:  # callback boundary: fail this call only
            log.exception("call %s: turn taking failed", self.call_id)
            self._end("error", error=f"{type(exc).__name__}: {exc}", close_code=1011)

    def _on_vad_error(self, error: BaseException) -> None:
        log.error("call %s: vad batch failed: %s", self.call_id, error)
        self._end("error", error=f"vad failed: {type(error).__name__}: {error}", close_code=1011)

    async def _tick(self) -> None:
        while True:
            await self._clock.sleep(TICK_S)
            expired = self._stream_guard.expired(self._clock.monotonic())
            if expired is not None:
                self._on_protocol_error(expired)
                return
            await self._apply(self.turns.handle(tp.Tick(), self._clock.monotonic()))
            if self._observe is not None and self.transport.sending:
                await self._playout.flush()

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
                self._start_job(self._jobs.answer(action))
                self._speaker.arm_holding_phrase()
            elif isinstance(action, tp.BargeIn):
                await self._speaker.barge_in()
            elif isinstance(action, tp.CancelReply):
                self._cancel_job()
            elif isinstance(action, tp.Reprompt):
                self._start_job(self._jobs.reprompt(action.count))
            elif isinstance(action, tp.DeliverDtmf):
                self._turn_ended_at_s = self._clock.monotonic()
                self._start_job(self._jobs.reply_to_dtmf(action.digit))
            elif isinstance(action, tp.EndCall):
                if action.reason == "silence":
                    self._start_job(self._jobs.say_goodbye_after_silence())
                else:
                    self._end("caller")

    def _start_job(self, coro: Awaitable[None]) -> None:
        self._cancel_job()
        self._job = asyncio.get_running_loop().create_task(self._guard(coro))

    def _cancel_job(self) -> None:
        self._speaker.cancel_holding()  # the reply it stood in for is gone
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
        recorded = self.rt.events.append(screen(event) if screen is not None else event)
        if self._observe is not None:
            self._observe(recorded)  # the browser page's transcript (wire/browser.py)
        return recorded
