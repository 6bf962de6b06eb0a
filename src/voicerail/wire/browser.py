"""The server side of the browser call page's WebSocket, as a sans-I/O protocol object.

The page (``GET /call``, ``server/call_page/``) captures the microphone and plays
the agent with AudioWorklets, and speaks this protocol over one WebSocket
(``WS /call/media``) per call. It is voicerail's own protocol, so this module is
its specification.

Why a WebSocket and AudioWorklets rather than WebRTC (aiortc): the page is for
trying an agent on localhost or a LAN, where loss is nil and the latency that
matters is the caller's. WebRTC would add Chromium's adaptive jitter buffer
(NetEq holds at least one 20 ms Opus packet and typically 40-80 ms more,
https://webrtc.googlesource.com/src/+/refs/heads/main/modules/audio_coding/neteq/,
read 2026-12), Opus encoding and decoding on both sides, and an ICE and DTLS
handshake before the first sample (several round trips), for packet-loss
concealment and NAT traversal that a LAN does not need. Over a WebSocket the
page sends 20 ms blocks of raw PCM as the worklet captures them and plays what
arrives at once; the only buffering is the playout lead the server already keeps
(``audio.playback_lead_s``), and the page reports exactly when each mark has
been rendered. It is also one more :class:`~voicerail.wire.transport.MediaTransport`
over the socket machinery every other transport uses (admission, stream limits,
close codes). Over a lossy WAN, TCP's head-of-line blocking would stall audio:
callers there should come in through a telephony provider.

Measured (``bench/browser_latency.py``, Debian Chromium headless, 2026-12-06, on
a 2-core machine shared with other jobs): WebRTC between two peer connections in
one page on loopback took 37 ms from offer to connected and its receiver's
jitter buffer held 29 ms on average (target 25 ms) with no network at all; an
aiortc server would add its own jitter buffer and Opus decoding on top. The
WebSocket page adds neither: its AudioContext reported 10 ms base and 0 ms output
latency, and the voice-to-voice latency it measured for the clinic booking was
1.02, 0.96, 1.35, 3.27 and 5.43 s per reply, the models' time dominating.

The protocol. Text frames are JSON objects with an ``event`` field; binary frames
are audio, signed 16-bit little-endian mono PCM at the page's rate.

Page to server:

* ``{"event": "start", "sampleRateHz": R}``: first, once; ``R`` is the page's
  AudioContext rate, 8000 to 96000.
* binary: microphone audio at ``R``, whole samples, at most :data:`MAX_FRAME_BYTES`.
* ``{"event": "played", "mark": NAME}``: the audio queued before mark ``NAME`` has
  been rendered to the speaker (the page adds its output latency).
* ``{"event": "cleared"}``: the page dropped its queued audio after a ``clear``.
* ``{"event": "dtmf", "digit": D}``: a key of the page's keypad.
* ``{"event": "hangup"}``: the caller hung up; nothing may follow.

Server to page: ``{"event": "started", "callRef": ID, "sampleRateHz": R}`` once;
binary agent audio at ``R``; ``{"event": "mark", "name": NAME}``;
``{"event": "clear"}``; ``{"event": "transcript", "role": "caller"|"agent",
"text": TEXT}`` (the recorded, screened text: personal data redacted as stored).

Rules :class:`BrowserCallProtocol` keeps:

1. ``start`` comes first and once, with an integer ``sampleRateHz`` in range.
2. Binary frames come only after ``start`` and before ``hangup``, hold whole
   samples and at most :data:`MAX_FRAME_BYTES` bytes.
3. ``played`` names a mark we sent that was not played yet. A mark dropped by a
   ``clear`` may still come back once (the page rendered it while the clear was
   on its way); it is then ignored. ``cleared`` forgets the dropped marks.
4. After ``hangup`` nothing may come; any other event name is refused, naming it.
5. Audio is resampled with soxr (``audio/resample.py``, medium quality for its
   shorter delay) to the call's 8 kHz on the way in and from it to the page's
   rate on the way out; each mark and clear
   ends the outbound resampler's stream, so the audio before a mark is whole.
6. A rejected frame changes nothing; we send only after ``start``.
"""

from __future__ import annotations

import json

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.audio.resample import StreamResampler
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.events.model import Event, EventKind
from voicerail.wire.stream_base import QueuedStream, check_dtmf_digit, check_l16_frame
from voicerail.wire.transport import (
    CALL_RATE_HZ,
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
)
from voicerail.wire.twilio_parsing import _load, _quote

__all__ = ["MAX_FRAME_BYTES", "MAX_RATE_HZ", "MIN_RATE_HZ", "BrowserCallProtocol"]

MIN_RATE_HZ = 8000
MAX_RATE_HZ = 96000
MAX_FRAME_BYTES = 192_000
"""Largest binary frame accepted: one second of PCM16 at 96 kHz (our limit)."""
#: soxr's medium quality: streamed in 20 ms blocks, it holds back 35 ms of audio
#: from 48 kHz to 8 kHz and 36 ms from 8 kHz to 48 kHz, against 128 ms and 138 ms
#: for "HQ" (measured 2026-12 with python-soxr on one second of 20 ms blocks); the
#: call is 8 kHz telephone band, which MQ's passband and rejection cover, and the
#: held audio is latency the caller would hear on every turn.
_QUALITY = "MQ"


class BrowserCallProtocol(QueuedStream):
    """One browser call page's WebSocket; a
    :class:`~voicerail.wire.transport.MediaTransport`. No I/O.

    Args:
        call_ref: the call's id, chosen by the server (the page never names it).
        caller: who the page's user is, when the server knows (a login); personal data.
    """

    name = "browser"

    def __init__(self, call_ref: str, caller: str = "") -> None:
        if not call_ref:
            raise ValueError("call_ref must not be empty")
        super().__init__()
        self._call_ref = call_ref
        self._caller = caller
        self._hung_up = False
        self._rate_hz = CALL_RATE_HZ
        self._down: StreamResampler | None = None
        self._up: StreamResampler | None = None
        self._pending: list[str] = []
        self._dropped: set[str] = set()  # marks a clear dropped (rule 3)

    @property
    def sending(self) -> bool:
        return self._call is not None and not self._hung_up

    @property
    def sample_rate_hz(self) -> int:
        """The page's audio rate (8000 until ``start`` says)."""
        return self._rate_hz

    # -- inbound ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame from the page and queue its event.

        Raises:
            ProtocolError: a break of rules 1 to 4, or malformed JSON. Nothing changes.
        """
        if isinstance(data, bytes):
            self._receive_audio(data)
            return
        event, fields = _load(data)
        if self._hung_up:
            raise ProtocolError(f"unexpected {_quote(event)} event after 'hangup'", event=event)
        if event == "start":
            if self._call is not None:
                raise ProtocolError("unexpected second 'start' event", event=event)
            self._start(fields.integer("sampleRateHz"))
            return
        if self._call is None:
            raise ProtocolError(f"expected 'start' event, got {_quote(event)}", event=event)
        if event == "played":
            self._played(fields.string("mark"))
        elif event == "cleared":
            self._dropped.clear()
        elif event == "dtmf":
            digit = fields.string("digit")
            self._events.append(DigitPressed(check_dtmf_digit(digit, "digit", event)))
        elif event == "hangup":
            self._hung_up = True
            self._events.append(CallHungUp())
        else:
            raise ProtocolError(f"unknown event {_quote(event)}", event=event)

    def _start(self, rate_hz: int) -> None:
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            raise ProtocolError(
                f"field 'sampleRateHz' in 'start' message must be {MIN_RATE_HZ} to "
                f"{MAX_RATE_HZ}, got {rate_hz}",
                event="start",
            )
        self._rate_hz = rate_hz
        if rate_hz != CALL_RATE_HZ:
            self._down = StreamResampler(rate_hz, CALL_RATE_HZ, _QUALITY)
            self._up = StreamResampler(CALL_RATE_HZ, rate_hz, _QUALITY)
        self._call = CallAnswered(
            call_ref=self._call_ref,
            stream_ref=self._call_ref,
            caller=self._caller,
            encoding="audio/l16",
            sample_rate_hz=rate_hz,
        )
        self._events.append(self._call)
        started = {"event": "started", "callRef": self._call_ref, "sampleRateHz": rate_hz}
        self._outgoing.append(json.dumps(started))

    def _played(self, name: str) -> None:
        if name in self._pending:
            self._pending.remove(name)
            self._events.append(PlaybackMarked(name))
        elif name in self._dropped:
            self._dropped.discard(name)  # rendered while our clear was on its way
        else:
            raise ProtocolError(
                f"mark {_quote(name)} was never sent or was already played", event="played"
            )

    def _receive_audio(self, data: bytes) -> None:
        if self._call is None:
            raise ProtocolError(f"binary frame of {len(data)} bytes before 'start'", event="audio")
        if self._hung_up:
            raise ProtocolError(f"binary frame of {len(data)} bytes after 'hangup'", event="audio")
        check_l16_frame(data, MAX_FRAME_BYTES)
        pcm = self._down.process(data) if self._down is not None else data
        if pcm:
            self._events.append(AudioReceived(pcm))

    # -- outbound --------------------------------------------------------------------

    def send_audio(self, ulaw: bytes) -> None:
        """Queue agent audio (μ-law 8 kHz) as one binary frame of PCM16 at the page's rate.

        Raises:
            LocalProtocolError: not :attr:`sending`, or empty audio.
        """
        self._check_sending("audio")
        if not ulaw:
            raise LocalProtocolError("cannot send empty audio", event="audio")
        pcm = ulaw_to_pcm16(ulaw)
        if self._up is not None:
            pcm = self._up.process(pcm)
        if pcm:
            self._outgoing.append(pcm)

    def send_mark(self, name: str) -> None:
        """Queue a mark after the audio so far (its tail flushed from the resampler).

        Raises:
            LocalProtocolError: not :attr:`sending`, or an empty name.
        """
        self._check_sending("mark")
        if not name:
            raise LocalProtocolError("cannot send a mark with an empty name", event="mark")
        if self._up is not None:
            tail = self._up.flush()
            if tail:
                self._outgoing.append(tail)
        self._outgoing.append(json.dumps({"event": "mark", "name": name}))
        self._pending.append(name)

    def send_clear(self) -> None:
        """Queue a clear: the page drops what it has not played (barge-in).

        Raises:
            LocalProtocolError: not :attr:`sending`.
        """
        self._check_sending("clear")
        if self._up is not None:
            self._up.flush()  # the cut reply's tail is not sent
        self._dropped.update(self._pending)
        self._pending.clear()
        self._outgoing.append(json.dumps({"event": "clear"}))

    def observe_event(self, event: Event) -> None:
        """Show the call's own transcript on the page: the caller's final transcripts
        and the agent's replies, as recorded (after the compliance screen).

        Ignored before ``start`` and after ``hangup``, and for other event kinds.
        """
        if not self.sending:
            return
        if event.kind == EventKind.TRANSCRIPT_FINAL:
            role, text = "caller", event.pii.get("text")
        elif event.kind == EventKind.DIALOG_DECIDED:
            role, text = "agent", event.pii.get("agent_text")
        else:
            return
        if isinstance(text, str) and text:
            message = {"event": "transcript", "role": role, "text": text}
            self._outgoing.append(json.dumps(message))

    def _check_sending(self, event: str) -> None:
        if self._call is None:
            raise LocalProtocolError(f"cannot send {event!r} before 'start'", event=event)
        if self._hung_up:
            raise LocalProtocolError(f"cannot send {event!r} after 'hangup'", event=event)
