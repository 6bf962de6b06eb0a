"""The call driver in process: a fake transport, fake providers and a clock that
advances itself (no socket, no real waits). Barge-in, silence, DTMF, a hang-up
mid-sentence and provider failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicerail.dialog.base import AgentReply
from voicerail.errors import ErrorClass, ProviderError
from voicerail.events.model import EventKind, Outcome
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import (
    STTCapabilities,
    Transcript,
    TTSCapabilities,
    TTSChunk,
)
from voicerail.routing.router import Router
from voicerail.session.driver import CallSession
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.testing.clock import AutoClock, run_virtual
from voicerail.testing.transport import FakeTransport
from voicerail.wire.transport import AudioReceived, CallAnswered, CallHungUp, DigitPressed

FRAME_S = 0.02
SILENCE = b"\x00\x00" * 160
TONE = (np.sin(np.arange(160) * 2 * np.pi * 300 / 8000) * 8000).astype("<i2").tobytes()
AUDIO = AudioConfig(speculative_stt_after_s=None, turn_check_after_s=None)


class HeardSTT:
    """Hears the same words in every utterance."""

    name, model, capabilities = "heard", "none", STTCapabilities()

    def __init__(self, text: str = "book a cleaning") -> None:
        self.text = text

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript(self.text, is_final=True, confidence=0.9)


class ToneTTS:
    """``seconds_per_sentence`` of a tone per request (s16le, 8 kHz)."""

    capabilities = TTSCapabilities(sample_rate_hz=8000)

    def __init__(self, name: str = "tone", seconds_per_sentence: float = 0.2) -> None:
        self.name, self.model = name, "none"
        self.num_samples = int(8000 * seconds_per_sentence)
        self.requests = 0

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        self.requests += 1
        yield TTSChunk(b"\x10\x00" * self.num_samples, 8000, text)


class BrokenTTS:
    name, model, capabilities = "broken", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        raise ProviderError("503 from upstream", provider="broken", status=503)
        yield  # pragma: no cover  (makes this an async generator)


@dataclass
class ScriptDialog:
    heard: list[tuple[str, str]] = field(default_factory=list)

    async def start(self) -> AgentReply:
        return AgentReply("Hello, this is the clinic's virtual assistant. How can I help?")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        return AgentReply(f"You said {text}.")

    async def on_dtmf(self, digits: str) -> AgentReply:
        return AgentReply(f"You pressed {digits}. Goodbye.", end_call=True)

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return AgentReply("Goodbye." if final else "Are you still there?")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        self.heard.append((heard_text, full_text))


@dataclass
class ScriptAgent:
    name: str = "script"
    dialogs: list[ScriptDialog] = field(default_factory=list)

    def new_dialog(self, call_id: str) -> ScriptDialog:
        self.dialogs.append(ScriptDialog())
        return self.dialogs[-1]


class Caller:
    """Streams 20 ms frames on the call's clock: speech while some is queued."""

    def __init__(self, transport: FakeTransport, clock: AutoClock) -> None:
        self.transport, self.clock = transport, clock
        self.speech_frames = 0

    def say(self, seconds: float) -> None:
        self.speech_frames += round(seconds / FRAME_S)

    async def stream(self) -> None:
        while True:
            await self.clock.sleep(FRAME_S)
            speaking = self.speech_frames > 0
            self.speech_frames -= speaking
            self.transport.push(AudioReceived(TONE if speaking else SILENCE))


@dataclass
class Call:
    session: CallSession
    transport: FakeTransport
    caller: Caller
    clock: AutoClock
    store: SQLiteEventStore
    closed: list[tuple[int, str]]
    task: asyncio.Task[Any] | None = None

    async def until(self, kind: EventKind, timeout_s: float = 60.0) -> None:
        """Wait (on the call's clock) until an event of ``kind`` was recorded."""
        waited = 0.0
        while not self.kinds().count(kind):
            assert waited < timeout_s, f"no {kind} within {timeout_s} s: {self.kinds()}"
            await self.clock.sleep(FRAME_S)
            waited += FRAME_S

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.store.events(self.session.call_id)]

    def events(self, kind: EventKind) -> list[Any]:
        return [e for e in self.store.events(self.session.call_id) if e.kind == kind]

    async def end(self) -> Any:
        assert self.task is not None
        record = await asyncio.wait_for(self.task, 600)
        return record


def start_call(
    tmp_path,
    *,
    tts: Any = None,
    router: Router | None = None,
    audio: AudioConfig = AUDIO,
    turn_model: Any = None,
    **kw: Any,
) -> Call:
    clock = AutoClock()
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(
        agent=ScriptAgent(),
        stt=HeardSTT(),
        tts=tts or ToneTTS(),
        events=store,
        clock=clock,
        audio=audio,
        router=router,
        turn_model=turn_model,
    )
    transport = FakeTransport(**kw)
    closed: list[tuple[int, str]] = []

    async def send(frame: str | bytes) -> None:
        raise AssertionError("the fake transport hands nothing to the socket")

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))

    session = CallSession(runtime, send, close, transport=transport)
    call = Call(session, transport, Caller(transport, clock), clock, store, closed)
    transport.push(CallAnswered("CA1", "MZ1", caller="+15550100"))
    call.task = asyncio.get_running_loop().create_task(session.run(transport.frames()))
    asyncio.get_running_loop().create_task(call.caller.stream())
    return call


def test_dtmf_is_answered_and_the_agent_hangs_up_after_its_reply(tmp_path):
    async def main() -> tuple[Any, Call]:
        call = start_call(tmp_path)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        call.transport.push(DigitPressed("5"))
        return await call.end(), call

    record, call = run_virtual(main())
    decided = [e.data["reason"] for e in call.events(EventKind.DIALOG_DECIDED)]
    assert decided == ["greeting", "dtmf"]
    dtmf = call.events(EventKind.DTMF_RECEIVED)[0]
    assert dtmf.pii == {} and dtmf.data == {"pci": False}  # no key kept (issue 14)
    assert record.outcome == "completed" and call.closed == [(1000, "agent")]
    assert record.data["transport"] == "fake"


def test_a_caller_turn_is_transcribed_and_answered(tmp_path):
    async def main() -> Call:
        call = start_call(tmp_path)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        await call.clock.sleep(1.0)
        call.caller.say(1.0)
        await call.until(EventKind.TRANSCRIPT_FINAL)
        await call.clock.sleep(1.0)
        call.transport.push(CallHungUp())
        await call.end()
        return call

    call = run_virtual(main())
    ended = call.events(EventKind.USER_TURN_ENDED)
    assert len(ended) == 1 and ended[0].data["ended_by"] == "silence"
    agent_texts = [e.pii["agent_text"] for e in call.events(EventKind.DIALOG_DECIDED)]
    assert agent_texts[-1] == "You said book a cleaning."


def test_silence_is_reprompted_then_the_agent_says_goodbye(tmp_path):
    async def main() -> tuple[Any, Call]:
        call = start_call(tmp_path)
        return await call.end(), call

    record, call = run_virtual(main())
    assert call.kinds().count(EventKind.REPROMPTED) >= 1
    reasons = [e.data["reason"] for e in call.events(EventKind.DIALOG_DECIDED)]
    assert reasons[0] == "greeting" and reasons[-1] == "silence_hangup"
    assert record.outcome == "abandoned" and call.closed == [(1000, "silence")]


def test_barge_in_clears_playback_and_tells_the_dialog_what_was_heard(tmp_path):
    async def main() -> Call:
        call = start_call(tmp_path, tts=ToneTTS(seconds_per_sentence=3.0), echo_marks=False)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        await call.clock.sleep(1.0)
        call.caller.say(1.0)
        await call.until(EventKind.BARGE_IN)
        call.transport.disconnect()
        await call.end()
        return call

    call = run_virtual(main())
    assert "clear" in call.transport.sent_kinds()
    [barge] = call.events(EventKind.BARGE_IN)
    heard, full = barge.pii["heard_text"], barge.pii["full_text"]
    assert full.startswith(heard) and len(heard) < len(full)
    [dialog] = call.session.rt.agent.dialogs  # type: ignore[attr-defined]
    assert dialog.heard == [(heard, full)]


def test_a_hang_up_mid_sentence_ends_the_call_as_abandoned(tmp_path):
    async def main() -> tuple[Any, Call]:
        call = start_call(tmp_path, tts=ToneTTS(seconds_per_sentence=5.0), echo_marks=False)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        await call.clock.sleep(0.5)
        call.transport.push(CallHungUp())
        return await call.end(), call

    record, call = run_virtual(main())
    assert record.outcome == "abandoned" and record.error is None
    assert call.kinds()[-1] == EventKind.CALL_ENDED
    assert call.closed == []  # the caller left: nothing to close


def test_a_failing_tts_fails_over_to_the_next_provider(tmp_path):
    async def main() -> Call:
        backup = ToneTTS("backup")
        router = Router(tts=[BrokenTTS(), backup], clock=AutoClock())
        call = start_call(tmp_path, router=router)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        call.transport.push(CallHungUp())
        await call.end()
        assert backup.requests >= 1
        return call

    call = run_virtual(main())
    attempts = [(e.provider, e.outcome) for e in call.events(EventKind.PROVIDER_ATTEMPTED)]
    assert attempts[:2] == [("broken", "error"), ("backup", "ok")]
    [failed_over] = call.events(EventKind.PROVIDER_FAILED_OVER)[:1]
    assert failed_over.provider == "backup"
    assert call.events(EventKind.PROVIDER_ATTEMPTED)[0].error_class == str(ErrorClass.TRANSIENT)
    assert call.kinds().count(EventKind.TTS_FIRST_AUDIO) == 1  # the caller heard the greeting


# -- the pieces the driver coordinates (session/jobs.py, speaking.py, turn_ends.py)


def test_a_decision_records_its_booking_handoff_and_outcome(tmp_path):
    async def main() -> tuple[Any, Call]:
        call = start_call(tmp_path)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        reply = AgentReply("Booked.", booking_id="B-7", handoff=True, outcome=Outcome.COMPLETED)
        call.session._jobs.record_decision(reply, call.clock.monotonic(), reason="user_turn")
        call.transport.push(CallHungUp())
        return await call.end(), call

    record, call = run_virtual(main())
    assert call.events(EventKind.DIALOG_DECIDED)[-1].data["reason"] == "user_turn"
    assert [e.data for e in call.events(EventKind.BOOKING_WRITTEN)] == [{"booking_id": "B-7"}]
    assert len(call.events(EventKind.HANDOFF_REQUESTED)) == 1
    assert record.data["booking_id"] == "B-7" and record.data["handoff"] is True
    assert record.outcome == "completed"  # decided by the reply, kept at hang-up


def test_each_sentence_of_a_reply_is_followed_by_its_own_mark(tmp_path):
    async def main() -> tuple[Any, Call]:
        call = start_call(tmp_path)
        await call.until(EventKind.TTS_FIRST_AUDIO)
        call.session._speaker.on_mark("not-ours", call.clock.monotonic())
        call.transport.push(DigitPressed("5"))  # "You pressed 5. Goodbye.", then hang up
        return await call.end(), call

    record, call = run_virtual(main())
    sent_marks = [name for kind, name in call.transport.sent if kind == "mark"]
    # Reply 2 (the DTMF reply) has two sentences (session/speaking.py rule 1), and
    # the call ends only once both were heard (rule 2).
    assert sent_marks[-2:] == ["r2.s0", "r2.s1"] and record.outcome == "completed"
    played = {e.data["mark"]: e.data["current"] for e in call.events(EventKind.MARK_PLAYED)}
    assert played["r2.s0"] is True and played["r2.s1"] is True
    assert played["not-ours"] is False


class SureTurnModel:
    async def probability_async(self, pcm16: Any) -> float:
        return 1.0


def _session(tmp_path, audio: AudioConfig, turn_model: Any = None) -> CallSession:
    async def send(frame: str | bytes) -> None:
        raise AssertionError("unused")

    async def close(code: int, reason: str) -> None:
        raise AssertionError("unused")

    runtime = Runtime(
        agent=ScriptAgent(),
        stt=HeardSTT(),
        tts=ToneTTS(),
        events=SQLiteEventStore(tmp_path / "events.sqlite3"),
        clock=AutoClock(),
        audio=audio,
        turn_model=turn_model,
    )
    return CallSession(runtime, send, close, transport=FakeTransport())


def test_speculation_starts_by_the_models_check_when_that_is_sooner(tmp_path):
    audio = AudioConfig(speculative_stt_after_s=0.3, turn_check_after_s=0.1)

    async def main() -> tuple[Any, Any]:
        return (
            _session(tmp_path, audio, SureTurnModel())._turn_ends,
            _session(tmp_path, audio)._turn_ends,
        )

    with_model, without_model = run_virtual(main())
    assert with_model.speculation is not None and with_model.speculation.after_s == 0.1
    assert with_model.end_of_turn is not None
    assert without_model.speculation is not None and without_model.speculation.after_s == 0.3
    assert without_model.end_of_turn is None


def test_a_turn_ended_by_the_model_says_so(tmp_path):
    async def main() -> Call:
        audio = AudioConfig(speculative_stt_after_s=None, turn_check_after_s=0.1)
        call = start_call(tmp_path, audio=audio, turn_model=SureTurnModel())
        await call.until(EventKind.TTS_FIRST_AUDIO)
        await call.clock.sleep(1.0)
        call.caller.say(1.0)
        await call.until(EventKind.USER_TURN_ENDED)
        call.transport.push(CallHungUp())
        await call.end()
        return call

    call = run_virtual(main())
    [ended] = call.events(EventKind.USER_TURN_ENDED)
    assert ended.data["ended_by"] == "model" and ended.data["turn_probability"] == 1.0
    assert ended.data["endpoint_wait_s"] < AUDIO.endpoint_silence_s
