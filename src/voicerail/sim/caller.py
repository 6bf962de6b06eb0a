"""A simulated phone caller that behaves as Twilio does on a real call (or as
Telnyx, Plivo or Vonage do: the provider's frames come from ``sim/caller_wire.py``).

(About 600 lines: playback, the script and the measures at the ear share the
call's clock, and following TwiML across streams (issue 12) restarts them per
stream. The next split is the playback buffer and arrival measures into
``sim/playback.py``.)

Given the voice webhook's URL it starts as Twilio does: ``POST`` the webhook,
follow the TwiML to the stream, and when the server ends the stream without the
caller hanging up (a close of any code: 1000 after the agent's goodbye, 1006
when the worker died, 1011, 1012, 1013), ``POST`` the ``<Connect action>`` URL
and follow its TwiML: a new ``<Connect><Stream>`` carries the call on, and the
script continues from the first turn the agent had not answered (``sim/twiml.py``).
Given only a media URL it connects there directly, once.

It connects to the media WebSocket, sends ``connected`` and ``start``, streams
20 ms μ-law frames in real time for the whole call (silence between turns, as
Twilio's inbound track does), plays the agent's audio at real-time speed,
echoes each ``mark`` when the audio before it has finished playing, honours
``clear`` (dropping buffered audio and echoing its pending marks), and sends
``stop`` at the end. Protocol reference:
https://www.twilio.com/docs/voice/media-streams/websocket-messages (2026-11).

Latency is measured at the caller's ear (``TurnTiming.v2v_latency_s``): from
the end of the caller's *speech* (the send time of the turn's last audible
frame, found once per turn on its own audio; trailing silence in the recording
does not count) to the first *audible* agent frame at the playback point (the
tick of the caller's 20 ms playback clock that starts playing it; silent
leading frames do not count). "Audible" is rule 2 of
:mod:`voicerail.audio.levels` (-45 dBFS over a 20 ms frame, μ-law decoded). The
older measure, end of the audio file to the first media message received, is
kept as ``TurnTiming.v2v_received_latency_s``.

What else the caller measures, for load runs (``voicerail simulate``):

* its own scheduling lag: how late each 20 ms send woke up against the absolute
  frame clock (``CallResult.send_lag_ms``); large values mean the simulator, not
  the server, is overloaded and the run's figures are not to be trusted;
* the agent's audio: the span of every reply (``CallResult.replies``), gaps in
  playback while the agent speaks (the caller's buffer ran dry before the reply
  ended; ``CallResult.audio_gaps_s``), arrival gaps over 40 ms, and the arrival
  jitter of paced frames (``CallResult.arrival_jitter_ms``);
* protocol errors: messages from the server it cannot parse, or for another stream.

Optional: a network impairment of the media path (:mod:`voicerail.sim.impair`).
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.audio.levels import ulaw_is_audible
from voicerail.audio.resample import write_wav
from voicerail.errors import ProtocolError
from voicerail.sim import twiml
from voicerail.sim.call_result import CallerTurn, CallResult, ReplySpan, TurnTiming
from voicerail.sim.caller_wire import (
    AgentAudio,
    AgentClear,
    AgentMark,
    CallerWire,
    TwilioCallerWire,
)
from voicerail.sim.impair import ImpairedLink

FRAME_S = 0.02
FRAME_NUM_BYTES = 160
ULAW_SILENCE = b"\xff" * FRAME_NUM_BYTES
#: WebSocket close code "Try Again Later" (RFC 6455 §7.4.1): the server is full.
CLOSE_TRY_AGAIN_LATER = 1013
# Paced agent frames skipped per reply before arrival jitter is measured: the
# server sends its playback lead (up to ~0.2 s) in a burst when a reply starts.
_JITTER_SKIP_FRAMES = 15
_BURST_S = 0.002
# An arrival gap longer than this, while the agent speaks, is reported.
ARRIVAL_GAP_S = 0.04

__all__ = [
    "CallResult",
    "CallerTurn",
    "ReplySpan",
    "SimulatedTwilioCall",
    "TurnTiming",
    "save_agent_audio",
]


class SimulatedTwilioCall:
    """One simulated call against a voicerail media WebSocket URL.

    Args:
        url: ``ws://HOST:PORT/twilio/media``.
        turn_gap_s: agent silence after which its reply counts as finished.
        max_reply_wait_s: longest wait for the agent to start or finish a reply.
        custom_parameters: sent in ``start.customParameters``.
        keep_agent_audio: keep the agent's μ-law audio (for ``--record-dir``).
        link: an impaired network path for this call's messages (None: direct).
        open_timeout_s: how long the WebSocket opening handshake may take.
        call_sid: the call's CallSid (the one the voice webhook was asked with);
            a new one when None.
        voice_url: the voice webhook (``http://h:p/twilio/voice``): the call starts
            there and follows TwiML, as Twilio does; None: ``url`` directly.
        auth_token: signs the webhooks as Twilio does (``X-Twilio-Signature``).
        max_streams: streams one call may open (a server that keeps answering a
            fresh stream must not keep the simulator forever).
        wire: the provider's side of the stream (``sim/caller_wire.py``); Twilio's,
            made anew for each stream with that stream's parameters, when None.
    """

    def __init__(
        self,
        url: str,
        *,
        turn_gap_s: float = 1.2,
        max_reply_wait_s: float = 30.0,
        custom_parameters: dict[str, str] | None = None,
        keep_agent_audio: bool = False,
        link: ImpairedLink | None = None,
        open_timeout_s: float = 10.0,
        call_sid: str | None = None,
        voice_url: str | None = None,
        auth_token: str | None = None,
        max_streams: int = 4,
        wire: CallerWire | None = None,
    ) -> None:
        self.url = url
        self.voice_url = voice_url
        self.auth_token = auth_token
        self.max_streams = max_streams
        self.streams_opened = 0  # media streams this call opened
        self.close_codes: list[int | None] = []  # how the server closed each stream
        self._turns_done = 0  # script turns the agent has answered (a new stream resumes there)
        self.turn_gap_s = turn_gap_s
        self.max_reply_wait_s = max_reply_wait_s
        self.custom_parameters = custom_parameters or {}
        self.keep_agent_audio = keep_agent_audio
        self.link = link
        self.open_timeout_s = open_timeout_s
        self.result = CallResult(
            call_sid=call_sid or f"CA{uuid.uuid4().hex}", stream_sid=f"MZ{uuid.uuid4().hex}"
        )
        self._twilio_wire = wire is None
        self.wire: CallerWire = wire or TwilioCallerWire(
            self.result.call_sid, self.result.stream_sid, dict(self.custom_parameters)
        )
        self._speech: collections.deque[bytes] = collections.deque()
        # Speech frames still to send before the current turn's speech has ended,
        # that turn, and the agent media count when its speech ended.
        self._speech_frames_left = 0
        self._speaking: TurnTiming | None = None
        self._media_count_at_speech_end = 0
        self._playback: collections.deque[bytes | str] = collections.deque()
        # Agent audio short of a whole 20 ms frame, waiting for the next media
        # message: servers may send payloads of any length (Twilio plays bytes).
        self._partial = b""
        self._last_message_s = FRAME_S
        self._last_agent_media_at = 0.0
        self._agent_media_count = 0
        self._closed = asyncio.Event()
        self._speech_drained = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._current: TurnTiming | None = None
        self._after_clear = False
        self._kept: list[bytes] = []
        self._reply: ReplySpan | None = None
        self._last_arrival = 0.0
        self._last_played_tick: int | None = None
        self._agent_audio = asyncio.Event()

    @property
    def turns_answered(self) -> int:
        """Script turns the agent has answered (and the caller heard the answer to)."""
        return self._turns_done

    async def _send_text(self, text: str | bytes) -> None:
        if self.link is not None and isinstance(text, str):
            self.link.send(text)
            return
        assert self._ws is not None
        await self._ws.send(text)

    def _incoming(self) -> AsyncIterator[str | bytes]:
        assert self._ws is not None
        if self.link is not None:
            return self.link.downlink(aiter(self._ws))
        return aiter(self._ws)

    async def run(self, turns: Sequence[CallerTurn]) -> CallResult:
        """Place the call, play ``turns`` in order, then hang up (unless the agent does).

        Raises:
            OSError: the server could not be reached.
            websockets.InvalidHandshake: the server refused the WebSocket.
            TimeoutError: the opening handshake took over ``open_timeout_s``.
            httpx.HTTPError: a webhook could not be reached or did not answer 200.
            ValueError: a webhook's answer was not TwiML.
        """
        if self.voice_url is None:
            await self._stream(self.url, self.custom_parameters, turns)
        else:
            await self._follow_twiml(self.voice_url, turns)
        self.result.ended_at = time.time()
        self.result.agent_ulaw = b"".join(self._kept)
        if self.link is not None:
            self.result.frames_dropped = self.link.dropped_up
        return self.result

    async def _follow_twiml(self, voice_url: str, turns: Sequence[CallerTurn]) -> None:
        """As Twilio: the webhook, its stream, then the action URL after each stream
        the server ended, until the TwiML ends the call or the caller hangs up."""
        caller, called = self.custom_parameters.get("from", "+15550100"), "+15550199"
        form = twiml.call_form(self.result.call_sid, status="ringing", caller=caller, called=called)
        answer = await twiml.request_twiml(voice_url, form, auth_token=self.auth_token)
        if answer.stream is None:
            self.result.refused = "webhook: " + answer.summary
            return
        while answer.stream is not None and self.streams_opened < self.max_streams:
            directive = answer.stream
            # The simulator's own parameters (sim_token, sim_script: what the fake
            # providers read) ride along with the TwiML's, a liberty real calls lack.
            parameters = {**self.custom_parameters, **directive.parameters}
            server_ended = await self._stream(directive.url, parameters, turns)
            if not server_ended or directive.action is None or self.result.refused:
                return
            form = twiml.call_form(
                self.result.call_sid, status="in-progress", caller=caller, called=called
            )
            answer = await twiml.request_twiml(directive.action, form, auth_token=self.auth_token)
            if answer.stream is not None:
                self.result.hung_up_by = "caller"  # the call goes on
                self.result.stream_sid = f"MZ{uuid.uuid4().hex}"  # a new stream, a new sid

    async def _stream(
        self, url: str, parameters: dict[str, str], turns: Sequence[CallerTurn]
    ) -> bool:
        """One media stream, from the first script turn not yet answered; True when
        the server ended it (the caller did not hang up)."""
        self._reset_stream()
        self.streams_opened += 1
        ws: ClientConnection
        # No permessage-deflate: Twilio does not compress media messages, and
        # compressing 50 small messages a second per call costs both sides CPU.
        async with websockets.connect(
            url, max_size=2**22, open_timeout=self.open_timeout_s, compression=None
        ) as ws:
            self._ws = ws
            if not self.result.connected_at:
                self.result.connected_at = time.time()
            hung_up = False
            pump = None
            if self.link is not None:
                pump = asyncio.create_task(self.link.pump_uplink(ws.send))
            if self._twilio_wire:
                # Each stream is a new Twilio stream: its own sid, sequence and parameters.
                self.wire = TwilioCallerWire(
                    self.result.call_sid, self.result.stream_sid, dict(parameters)
                )
            for frame in self.wire.opening():
                await self._send_text(frame)
            tasks = [
                asyncio.create_task(self._receive()),
                asyncio.create_task(self._frame_clock()),
            ]
            try:
                await self._script(turns)
                if self._closed.is_set():
                    self.result.hung_up_by = "agent"
                else:
                    hung_up = True
                    hangup = self.wire.hangup()
                    if hangup is not None:
                        await self._send_text(hangup)
                    await self._drain_link()
            except websockets.ConnectionClosed:
                self.result.hung_up_by = "agent"
            finally:
                if ws.close_code == CLOSE_TRY_AGAIN_LATER:
                    self.result.refused = f"stream closed 1013: {ws.close_reason}"
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if pump is not None:
                    pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)
        self.close_codes.append(ws.close_code)
        return not hung_up

    def _reset_stream(self) -> None:
        """A new stream starts clean: Twilio numbers each stream's messages from 1,
        and audio buffered for the old one is gone."""
        self._speech.clear()
        self._speech_frames_left = 0
        self._speaking = None
        self._playback.clear()
        self._partial = b""
        self._closed = asyncio.Event()
        self._speech_drained = asyncio.Event()
        self._last_played_tick = None

    async def _drain_link(self) -> None:
        """Let an impaired uplink deliver what it holds (the ``stop``) before closing."""
        if self.link is None:
            return
        deadline = time.monotonic() + self.link.impairment.delay_s * 2 + 1.0
        while not self.link.idle and time.monotonic() < deadline:
            await asyncio.sleep(FRAME_S)

    async def _script(self, turns: Sequence[CallerTurn]) -> None:
        """The turns from the first one not yet answered (a resumed stream opens
        with the agent's recap, answered as the greeting was)."""
        await self._wait_for_reply_end(since_count=self._agent_media_count)
        for turn in turns[self._turns_done :]:
            if self._closed.is_set():
                self.result.hung_up_by = "agent"
                return
            if turn.barge_in_after_s is not None:
                await self._wait_agent_audio(turn.barge_in_after_s)
            timing = TurnTiming(label=turn.label, started_at=time.time(), kind=turn.kind)
            if turn.hangup:
                timing.ended_at = timing.started_at
                self.result.turns.append(timing)
                self.result.hung_up_mid_call = bool(self._playback) or (
                    time.monotonic() - self._last_agent_media_at < 2 * FRAME_S
                )
                return
            if turn.dtmf:
                for digit in turn.dtmf:
                    await self._send_text(self.wire.dtmf(digit))
                timing.speech_ended_at = time.time()
            elif turn.silence_s:
                await self._until(None, timeout_s=turn.silence_s)
            else:
                self._speech_drained.clear()
                self._speech_frames_left = turn.speech_num_frames
                self._speaking = timing
                self._speech.extend(
                    turn.ulaw[k : k + FRAME_NUM_BYTES].ljust(FRAME_NUM_BYTES, b"\xff")
                    for k in range(0, len(turn.ulaw), FRAME_NUM_BYTES)
                )
                await self._until(self._speech_drained)
                if not self._speech_drained.is_set():  # the agent hung up mid-utterance
                    self.result.hung_up_by = "agent"
                    return
            timing.ended_at = time.time()
            self._speaking = None
            since_count = self._agent_media_count
            if timing.speech_ended_at is None:
                # A silent turn, or audio with no audible frame: the end of the audio
                # stands in for the end of speech.
                timing.speech_ended_at = timing.ended_at
            elif turn.kind == "speech":
                # The reply may have started in the recording's trailing silence.
                since_count = self._media_count_at_speech_end
            self._after_clear = False
            self._current = timing
            self.result.turns.append(timing)
            if not turn.silence_s:
                await self._wait_for_reply_end(since_count=since_count)
            if not self._closed.is_set():
                self._turns_done += 1
        if not self._closed.is_set():
            await asyncio.sleep(0.3)

    async def _until(self, event: asyncio.Event | None, timeout_s: float | None = None) -> None:
        """Wait for ``event`` (None: only the timeout), the call closing, or ``timeout_s``.

        Every wait of the script goes through here: a wait on an event alone would
        never end if the agent hangs up first (the frame clock stops with the socket).
        """
        waiters = [asyncio.create_task(self._closed.wait())]
        if event is not None:
            waiters.append(asyncio.create_task(event.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()

    async def _wait_agent_audio(self, after_s: float) -> None:
        """Wait until the agent has been audible for ``after_s`` seconds."""
        self._agent_audio.clear()
        await self._until(self._agent_audio, timeout_s=self.max_reply_wait_s)
        await asyncio.sleep(after_s)

    async def _wait_for_reply_end(self, *, since_count: int) -> None:
        """Wait until the agent spoke after ``since_count`` frames and then went quiet.

        Sleeps until the earliest moment the reply could be over rather than
        polling every frame, so that hundreds of callers wake up rarely.
        """
        deadline = time.monotonic() + self.max_reply_wait_s
        while time.monotonic() < deadline and not self._closed.is_set():
            spoke = self._agent_media_count > since_count
            quiet_s = time.monotonic() - self._last_agent_media_at
            if spoke and not self._playback and quiet_s >= self.turn_gap_s:
                return
            if not spoke:
                wait_s = 0.1
            else:
                buffered_s = sum(1 for item in self._playback if isinstance(item, bytes)) * FRAME_S
                wait_s = max(FRAME_S, self.turn_gap_s - quiet_s, buffered_s)
            await asyncio.sleep(min(wait_s, max(0.0, deadline - time.monotonic())) or FRAME_S)

    async def _frame_clock(self) -> None:
        """Every 20 ms on an absolute clock: send one inbound frame, play one agent frame.

        One timer per call for both directions, so that hundreds of callers fit
        in one process; how late each tick wakes up is the caller's scheduling lag.
        """
        start = time.monotonic()
        n = 0
        gap_ticks = int(self.turn_gap_s / FRAME_S)
        lags = self.result.send_lag_ms
        while True:
            n += 1
            due = start + n * FRAME_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            lags.append((time.monotonic() - due) * 1000)
            await self._send_frame(n)
            await self._play_frame(n, gap_ticks)

    async def _send_frame(self, n: int) -> None:
        """Send the caller's next 20 ms: speech when queued, else silence."""
        speech_ends = False
        if self._speech:
            frame = self._speech.popleft()
            if self._speech_frames_left > 0:
                self._speech_frames_left -= 1
                speech_ends = self._speech_frames_left == 0
            if not self._speech:
                self._speech_drained.set()
        else:
            frame = ULAW_SILENCE
        self.result.frames_sent += 1
        await self._send_text(self.wire.media(frame, n))
        if speech_ends and self._speaking is not None:
            # A frame is sent once its 20 ms have been spoken (as Twilio does): the
            # send time is the end of the frame's audio. From here on the agent's
            # audio answers this turn, though the recording's trailing silence
            # is still being sent.
            self._speaking.speech_ended_at = time.time()
            self._current = self._speaking
            self._media_count_at_speech_end = self._agent_media_count

    async def _receive(self) -> None:
        try:
            async for text in self._incoming():
                try:
                    message = self.wire.parse(text)
                except ProtocolError as exc:
                    self.result.protocol_errors.append(exc.message)
                    continue
                if isinstance(message, AgentAudio):
                    self._on_agent_media(message.ulaw)
                elif isinstance(message, AgentMark):
                    self._flush_partial()
                    self._playback.append(message.name)
                elif isinstance(message, AgentClear):
                    await self._on_clear()
        finally:
            self._closed.set()

    def _on_agent_media(self, payload: bytes) -> None:
        now = time.monotonic()
        self._track_arrival(now, len(payload) // FRAME_NUM_BYTES or 1)
        self._last_agent_media_at = now
        self._agent_media_count += 1
        self.result.agent_media_messages += 1
        self._agent_audio.set()
        current = self._current
        if current is not None and current.first_agent_audio_at is None:
            current.first_agent_audio_at = time.time()
        data = self._partial + payload
        whole = len(data) - len(data) % FRAME_NUM_BYTES
        for k in range(0, whole, FRAME_NUM_BYTES):
            self._playback.append(data[k : k + FRAME_NUM_BYTES])
        self._partial = data[whole:]
        seconds = len(payload) / 8000
        self.result.agent_audio_s += seconds
        if self._after_clear:
            self.result.agent_audio_after_clear_s += seconds

    def _track_arrival(self, now: float, num_frames: int) -> None:
        """Reply spans, arrival gaps and arrival jitter of the agent's frames.

        A message is expected when the previous one's audio has played (20 ms
        after a one-frame message); arriving more than ``ARRIVAL_GAP_S - 20 ms``
        later than that is an arrival gap, and the difference is jitter.
        """
        since = now - self._last_arrival
        expected = self._last_message_s
        reply = self._reply
        wall = time.time()
        if reply is None or since >= self.turn_gap_s:
            reply = self._reply = ReplySpan(started_at=wall, ended_at=wall)
            self.result.replies.append(reply)
        else:
            if since - expected > ARRIVAL_GAP_S - FRAME_S:
                self.result.arrival_gaps_s.append(since)
            # Back-to-back frames are the server's playback lead sent ahead on
            # purpose (at a reply's or a sentence's start), not jitter.
            if reply.num_frames >= _JITTER_SKIP_FRAMES and since >= _BURST_S:
                self.result.arrival_jitter_ms.append(abs(since - expected) * 1000)
        reply.ended_at = wall
        reply.num_frames += num_frames
        self._last_arrival = now
        self._last_message_s = num_frames * FRAME_S

    async def _on_clear(self) -> None:
        self.result.clears_received += 1
        self.result.clears_at.append(time.time())
        self._after_clear = True
        self._reply = None
        self._last_played_tick = None
        pending = [item for item in self._playback if isinstance(item, str)]
        self._playback.clear()
        self._partial = b""
        if self.wire.echoes_marks_on_clear:
            for name in pending:
                await self._echo_mark(name)
        for frame in self.wire.cleared():
            await self._send_text(frame)

    def _flush_partial(self) -> None:
        """Queue a trailing part-frame before a mark, padded with μ-law silence."""
        if self._partial:
            self._playback.append(self._partial.ljust(FRAME_NUM_BYTES, b"\xff"))
            self._partial = b""

    async def _echo_mark(self, name: str) -> None:
        self.result.marks_echoed += 1
        await self._send_text(self.wire.mark_played(name))

    async def _play_frame(self, n: int, gap_ticks: int) -> None:
        """Play one frame of the buffer (tick ``n``); echo marks as they are reached.

        A reply whose next frame is not there when its time to play comes has a
        gap (counted in ticks of the frame clock, so the caller's own lateness
        does not count as a gap).
        """
        while self._playback and isinstance(self._playback[0], str):
            await self._echo_mark(str(self._playback.popleft()))
        if self._playback:
            frame = self._playback.popleft()
            assert isinstance(frame, bytes)
            last = self._last_played_tick
            if last is not None and 1 < n - last < gap_ticks:
                self.result.audio_gaps_s.append((n - last - 1) * FRAME_S)
            self._last_played_tick = n
            current = self._current
            if current is not None and current.first_audible_at is None and ulaw_is_audible(frame):
                current.first_audible_at = time.time()
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
