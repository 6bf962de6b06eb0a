"""The server side of one Vonage Voice API WebSocket, as a sans-I/O protocol object.

Implements "WebSockets in the Vonage Voice API"
(https://developer.vonage.com/en/voice/voice-api/concepts/websockets, read
2026-12) for a socket opened by the NCCO ``connect`` action with a ``websocket``
endpoint (https://developer.vonage.com/en/voice/voice-api/ncco-reference#connect).

From Vonage: first a text frame ``{"event": "websocket:connected",
"content-type": "audio/l16;rate=16000", ...}`` carrying the endpoint's
``headers`` as top-level keys; then binary frames of 16-bit signed
little-endian linear PCM, mono, 20 ms each (640 bytes at 16 kHz, 320 at 8 kHz);
text frames ``websocket:dtmf`` (``digit``, ``duration``), ``websocket:notify``
(our ``payload`` back, once the audio before it has played) and
``websocket:cleared``. The call ends with the socket closing. To Vonage: binary
frames of the same format, ``{"action": "notify", "payload": {...}}`` and
``{"action": "clear"}``.

Rules :class:`VonageSocketProtocol` keeps:

1. The first frame is the text ``websocket:connected``, with a ``content-type``
   of ``audio/l16;rate=8000`` or ``audio/l16;rate=16000``; it comes once.
2. Binary frames come only after it, hold whole samples, and at most
   :data:`MAX_FRAME_BYTES` bytes.
3. Text frames after it are ``websocket:dtmf``, ``websocket:notify`` or
   ``websocket:cleared``; anything else is refused, naming it.
4. ``websocket:notify`` carries a ``payload.mark`` we sent and that was not
   acknowledged yet; ``websocket:cleared`` forgets the pending ones (Vonage
   drops the audio, and the notifications queued behind it).
5. The call is identified by the ``call_uuid`` header our NCCO sets (Vonage's
   call ``uuid``); ``from`` is the caller. Other headers become custom parameters.
6. Audio sent is whole 20 ms frames at the socket's rate: μ-law 8 kHz from the
   call is decoded, and resampled to 16 kHz when the socket runs at 16 kHz.
7. A rejected frame changes nothing; we send only after ``websocket:connected``.
"""

from __future__ import annotations

import json

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.audio.resample import StreamResampler
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.stream_base import QueuedStream, check_dtmf_digit, check_l16_frame
from voicerail.wire.transport import (
    CALL_RATE_HZ,
    AudioReceived,
    CallAnswered,
    DigitPressed,
    PlaybackMarked,
)
from voicerail.wire.twilio_parsing import _Fields, _load, _quote

__all__ = ["DOC_URL", "MAX_FRAME_BYTES", "VonageSocketProtocol"]

DOC_URL = "https://developer.vonage.com/en/voice/voice-api/concepts/websockets"
MAX_FRAME_BYTES = 32_000
"""Largest binary frame accepted: one second of L16 at 16 kHz (our limit)."""
_RATES = {"audio/l16;rate=8000": 8000, "audio/l16;rate=16000": 16000}
_FRAME_S = 0.02


class VonageSocketProtocol(QueuedStream):
    """One Vonage Voice API WebSocket; a
    :class:`~voicerail.wire.transport.MediaTransport`. No I/O."""

    name = "vonage"

    def __init__(self) -> None:
        super().__init__()
        self._rate_hz = CALL_RATE_HZ
        self._down: StreamResampler | None = None
        self._up: StreamResampler | None = None
        self._pending: list[str] = []
        self._out_pcm = b""  # agent audio short of a whole frame

    @property
    def sending(self) -> bool:
        return self._call is not None

    @property
    def sample_rate_hz(self) -> int:
        """The socket's audio rate (8000 until ``websocket:connected`` says)."""
        return self._rate_hz

    # -- inbound ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame from Vonage and queue its event.

        Raises:
            ProtocolError: a break of rules 1 to 4 or malformed JSON. Nothing changes.
        """
        if isinstance(data, bytes):
            self._receive_audio(data)
            return
        event, fields = _load(data)
        if event == "websocket:connected":
            if self._call is not None:
                raise ProtocolError("unexpected second 'websocket:connected' event", event=event)
            self._connect(fields)
            return
        if self._call is None:
            raise ProtocolError(f"expected 'websocket:connected' event, got {event!r}", event=event)
        if event == "websocket:dtmf":
            digit = fields.string("digit")
            self._events.append(DigitPressed(check_dtmf_digit(digit, "digit", event)))
        elif event == "websocket:notify":
            name = fields.child("payload").string("mark")
            if name not in self._pending:
                raise ProtocolError(
                    f"notify {_quote(name)} was never sent or was already played", event=event
                )
            self._pending.remove(name)
            self._events.append(PlaybackMarked(name))
        elif event == "websocket:cleared":
            self._pending.clear()
        else:
            raise ProtocolError(f"unknown event {_quote(event)}", event=event)

    def _connect(self, fields: _Fields) -> None:
        content_type = fields.string("content-type")
        rate_hz = _RATES.get(content_type.replace(" ", "").lower())
        if rate_hz is None:
            raise ProtocolError(
                f"unsupported content-type {_quote(content_type)}; expected "
                "'audio/l16;rate=8000' or 'audio/l16;rate=16000'",
                event="websocket:connected",
            )
        headers = {
            key: value
            for key, value in fields.mapping().items()
            if isinstance(value, str) and key not in ("event", "content-type")
        }
        call_ref = headers.pop("call_uuid", "")
        self._rate_hz = rate_hz
        if rate_hz != CALL_RATE_HZ:
            self._down = StreamResampler(rate_hz, CALL_RATE_HZ)
            self._up = StreamResampler(CALL_RATE_HZ, rate_hz)
        self._call = CallAnswered(
            call_ref=call_ref,
            stream_ref=call_ref,
            caller=headers.get("from", ""),
            custom_parameters=headers,
            tracks=("inbound",),
            encoding="audio/l16",
            sample_rate_hz=rate_hz,
        )
        self._events.append(self._call)

    def _receive_audio(self, data: bytes) -> None:
        if self._call is None:
            raise ProtocolError(
                f"binary frame of {len(data)} bytes before 'websocket:connected'", event="audio"
            )
        check_l16_frame(data, MAX_FRAME_BYTES)
        pcm = self._down.process(data) if self._down is not None else data
        if pcm:
            self._events.append(AudioReceived(pcm))

    # -- outbound --------------------------------------------------------------------

    def send_audio(self, ulaw: bytes) -> None:
        self._check_sending("audio")
        if not ulaw:
            raise LocalProtocolError("cannot send empty audio", event="audio")
        pcm = ulaw_to_pcm16(ulaw)
        if self._up is not None:
            pcm = self._up.process(pcm)
        data = self._out_pcm + pcm
        frame_num_bytes = int(self._rate_hz * _FRAME_S) * 2
        whole = len(data) - len(data) % frame_num_bytes
        for k in range(0, whole, frame_num_bytes):
            self._outgoing.append(data[k : k + frame_num_bytes])
        self._out_pcm = data[whole:]

    def send_mark(self, name: str) -> None:
        self._check_sending("notify")
        if not name:
            raise LocalProtocolError("cannot send a notify with an empty mark", event="notify")
        if self._out_pcm:  # the sentence's last part-frame, padded with silence
            frame_num_bytes = int(self._rate_hz * _FRAME_S) * 2
            self._outgoing.append(self._out_pcm.ljust(frame_num_bytes, b"\x00"))
            self._out_pcm = b""
        self._outgoing.append(json.dumps({"action": "notify", "payload": {"mark": name}}))
        self._pending.append(name)

    def send_clear(self) -> None:
        self._check_sending("clear")
        self._out_pcm = b""
        self._outgoing.append(json.dumps({"action": "clear"}))

    def _check_sending(self, event: str) -> None:
        if self._call is None:
            raise LocalProtocolError(
                f"cannot send {event!r} before 'websocket:connected'", event=event
            )
