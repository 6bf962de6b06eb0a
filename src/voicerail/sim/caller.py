"""A simulated phone caller that behaves as Twilio does on a real call.

It connects to the media WebSocket, sends ``connected`` and ``start``, streams
20 ms μ-law frames in real time for the whole call (silence between turns, as
Twilio's inbound track does), plays the agent's audio at real-time speed,
echoes each ``mark`` when the audio before it has finished playing, honours
``clear`` (dropping buffered audio and echoing its pending marks), and sends
``stop`` at the end. Protocol reference:
https://www.twilio.com/docs/voice/media-streams/websocket-messages (2026-11).

Latency is measured at the caller's ear: from the end of the caller's audio to
the first agent audio frame received after it (``v2v_latency_s``).
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

import voicerail.wire.twilio as twilio
from voicerail.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicerail.audio.resample import read_wav_mono, resample, write_wav

FRAME_S = 0.02
FRAME_NUM_BYTES = 160
ULAW_SILENCE = b"\xff" * FRAME_NUM_BYTES


@dataclass(frozen=True)
class CallerTurn:
    """One thing the caller does.

    Attributes:
        ulaw: the caller's speech, μ-law 8 kHz mono (empty for a silent or DTMF turn).
        label: what to call it in results (usually the WAV path).
        dtmf: digits to press instead of speaking.
        silence_s: stay silent this long instead of speaking.
        barge_in_after_s: start speaking this long after the agent's audio starts,
            instead of waiting for the agent to finish (a barge-in).
    """

    ulaw: bytes = b""
    label: str = ""
    dtmf: str = ""
    silence_s: float = 0.0
    barge_in_after_s: float | None = None

    @classmethod
    def from_wav(cls, path: str | Path, **kwargs: float | None) -> CallerTurn:
        """Load a mono WAV at any sample rate and convert it to 8 kHz μ-law."""
        pcm, rate_hz = read_wav_mono(path)
        return cls(ulaw=pcm16_to_ulaw(resample(pcm, rate_hz, 8000)), label=str(path), **kwargs)  # type: ignore[arg-type]


@dataclass
class TurnTiming:
    """What the caller measured for one turn (times are caller wall clock, seconds)."""

    label: str
    started_at: float = 0.0
    ended_at: float = 0.0
    first_agent_audio_at: float | None = None

    @property
    def v2v_latency_s(self) -> float | None:
        """End of caller audio to first agent audio frame received, seconds."""
        if self.first_agent_audio_at is None:
            return None
        return self.first_agent_audio_at - self.ended_at


@dataclass
class CallResult:
    """The caller's view of one call."""

    call_sid: str
    stream_sid: str
    turns: list[TurnTiming] = field(default_factory=list)
    hung_up_by: str = "caller"
    clears_received: int = 0
    marks_echoed: int = 0
    agent_audio_s: float = 0.0
    agent_audio_after_clear_s: float = 0.0
    agent_ulaw: bytes = b""


class SimulatedTwilioCall:
    """One simulated call against a voicerail media WebSocket URL.

    Args:
        url: ``ws://HOST:PORT/twilio/media``.
        turn_gap_s: agent silence after which its reply counts as finished.
        max_reply_wait_s: longest wait for the agent to start or finish a reply.
        custom_parameters: sent in ``start.customParameters``.
        keep_agent_audio: keep the agent's μ-law audio (for ``--record-dir``).
    """

    def __init__(
        self,
        url: str,
        *,
        turn_gap_s: float = 1.2,
        max_reply_wait_s: float = 30.0,
        custom_parameters: dict[str, str] | None = None,
        keep_agent_audio: bool = False,
    ) -> None:
        self.url = url
        self.turn_gap_s = turn_gap_s
        self.max_reply_wait_s = max_reply_wait_s
        self.custom_parameters = custom_parameters or {}
        self.keep_agent_audio = keep_agent_audio
        self.result = CallResult(
            call_sid=f"CA{uuid.uuid4().hex}", stream_sid=f"MZ{uuid.uuid4().hex}"
        )
        self._seq = 0
        self._chunk = 0
        self._speech: collections.deque[bytes] = collections.deque()
        self._playback: collections.deque[bytes | str] = collections.deque()
        self._last_agent_media_at = 0.0
        self._agent_media_count = 0
        self._closed = asyncio.Event()
        self._speech_drained = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._current: TurnTiming | None = None
        self._after_clear = False
        self._kept: list[bytes] = []

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send(self, message: twilio.InboundMessage) -> None:
        assert self._ws is not None
        await self._ws.send(twilio.serialize_inbound(message))

    async def run(self, turns: Sequence[CallerTurn]) -> CallResult:
        """Place the call, play ``turns`` in order, then hang up (unless the agent does)."""
        async with websockets.connect(self.url, max_size=2**22) as ws:
            self._ws = ws
            await self._send(twilio.Connected(protocol="Call", version="1.0.0"))
            await self._send(
                twilio.Start(
                    sequence_number=self._next_seq(),
                    stream_sid=self.result.stream_sid,
                    account_sid="AC" + "0" * 32,
                    call_sid=self.result.call_sid,
                    tracks=("inbound",),
                    custom_parameters=dict(self.custom_parameters),
                    media_format=twilio.MediaFormat("audio/x-mulaw", 8000, 1),
                )
            )
            tasks = [
                asyncio.create_task(self._receive()),
                asyncio.create_task(self._stream_inbound()),
                asyncio.create_task(self._play()),
            ]
            try:
                await self._script(turns)
                if self._closed.is_set():
                    self.result.hung_up_by = "agent"
                else:
                    await self._send(
                        twilio.Stop(
                            sequence_number=self._next_seq(),
                            stream_sid=self.result.stream_sid,
                            account_sid="AC" + "0" * 32,
                            call_sid=self.result.call_sid,
                        )
                    )
            except websockets.ConnectionClosed:
                self.result.hung_up_by = "agent"
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        self.result.agent_ulaw = b"".join(self._kept)
        return self.result

    async def _script(self, turns: Sequence[CallerTurn]) -> None:
        await self._wait_for_reply_end(since_count=0)
        for turn in turns:
            if self._closed.is_set():
                self.result.hung_up_by = "agent"
                return
            if turn.barge_in_after_s is not None:
                await self._wait_agent_audio(turn.barge_in_after_s)
            timing = TurnTiming(label=turn.label, started_at=time.time())
            if turn.dtmf:
                for digit in turn.dtmf:
                    await self._send(
                        twilio.DTMF(
                            sequence_number=self._next_seq(),
                            stream_sid=self.result.stream_sid,
                            track="inbound_track",
                            digit=digit,
                        )
                    )
            elif turn.silence_s:
                await asyncio.wait(
                    [asyncio.create_task(self._closed.wait())], timeout=turn.silence_s
                )
            else:
                self._speech_drained.clear()
                self._speech.extend(
                    turn.ulaw[k : k + FRAME_NUM_BYTES].ljust(FRAME_NUM_BYTES, b"\xff")
                    for k in range(0, len(turn.ulaw), FRAME_NUM_BYTES)
                )
                await self._speech_drained.wait()
            timing.ended_at = time.time()
            self._after_clear = False
            self._current = timing
            self.result.turns.append(timing)
            if not turn.silence_s:
                await self._wait_for_reply_end(since_count=self._agent_media_count)
        if not self._closed.is_set():
            await asyncio.sleep(0.3)

    async def _wait_agent_audio(self, after_s: float) -> None:
        """Wait until the agent has been audible for ``after_s`` seconds."""
        deadline = time.monotonic() + self.max_reply_wait_s
        start_count = self._agent_media_count
        while self._agent_media_count == start_count and time.monotonic() < deadline:
            await asyncio.sleep(FRAME_S)
        await asyncio.sleep(after_s)

    async def _wait_for_reply_end(self, *, since_count: int) -> None:
        """Wait until the agent spoke after ``since_count`` frames and then went quiet."""
        deadline = time.monotonic() + self.max_reply_wait_s
        while time.monotonic() < deadline and not self._closed.is_set():
            spoke = self._agent_media_count > since_count
            quiet_s = time.monotonic() - self._last_agent_media_at
            if spoke and not self._playback and quiet_s >= self.turn_gap_s:
                return
            await asyncio.sleep(FRAME_S)

    async def _stream_inbound(self) -> None:
        """Send one 20 ms frame every 20 ms: the caller's speech, else silence."""
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_S - time.monotonic()))
            if self._speech:
                payload = self._speech.popleft()
                if not self._speech:
                    self._speech_drained.set()
            else:
                payload = ULAW_SILENCE
            self._chunk += 1
            await self._send(
                twilio.Media(
                    sequence_number=self._next_seq(),
                    stream_sid=self.result.stream_sid,
                    track="inbound",
                    chunk=self._chunk,
                    timestamp_ms=int(n * FRAME_S * 1000),
                    payload=payload,
                )
            )

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for text in self._ws:
                message = twilio.parse_outbound(text)
                if isinstance(message, twilio.OutboundMedia):
                    self._on_agent_media(message.payload)
                elif isinstance(message, twilio.OutboundMark):
                    self._playback.append(message.name)
                elif isinstance(message, twilio.Clear):
                    await self._on_clear()
        finally:
            self._closed.set()

    def _on_agent_media(self, payload: bytes) -> None:
        now = time.monotonic()
        self._last_agent_media_at = now
        self._agent_media_count += 1
        current = self._current
        if current is not None and current.first_agent_audio_at is None:
            current.first_agent_audio_at = time.time()
        for k in range(0, len(payload), FRAME_NUM_BYTES):
            self._playback.append(payload[k : k + FRAME_NUM_BYTES])
        seconds = len(payload) / 8000
        self.result.agent_audio_s += seconds
        if self._after_clear:
            self.result.agent_audio_after_clear_s += seconds

    async def _on_clear(self) -> None:
        self.result.clears_received += 1
        self._after_clear = True
        pending = [item for item in self._playback if isinstance(item, str)]
        self._playback.clear()
        for name in pending:
            await self._echo_mark(name)

    async def _echo_mark(self, name: str) -> None:
        self.result.marks_echoed += 1
        await self._send(
            twilio.Mark(
                sequence_number=self._next_seq(), stream_sid=self.result.stream_sid, name=name
            )
        )

    async def _play(self) -> None:
        """Consume the playback buffer at real time; echo marks as they are reached."""
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_S - time.monotonic()))
            while self._playback and isinstance(self._playback[0], str):
                await self._echo_mark(str(self._playback.popleft()))
            if self._playback:
                frame = self._playback.popleft()
                assert isinstance(frame, bytes)
                if self.keep_agent_audio:
                    self._kept.append(frame)
                while self._playback and isinstance(self._playback[0], str):
                    await self._echo_mark(str(self._playback.popleft()))


def save_agent_audio(result: CallResult, record_dir: str | Path) -> Path:
    """Write the agent audio the caller heard as a 8 kHz WAV; returns its path."""
    out = Path(record_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result.call_sid}-agent.wav"
    write_wav(path, ulaw_to_pcm16(result.agent_ulaw), 8000)
    return path
