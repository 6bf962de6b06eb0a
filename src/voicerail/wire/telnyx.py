"""The server side of one Telnyx media stream, as a sans-I/O protocol object.

Implements "Stream call media over WebSocket" (Telnyx Media Streaming AsyncAPI,
https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket,
read 2026-12) for a bidirectional stream in RTP mode with PCMU at 8 kHz, the
mode the TeXML answer of ``server/provider_routes.py`` asks for
(``<Stream bidirectionalMode="rtp" bidirectionalCodec="PCMU">``,
https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/stream).

Frames from Telnyx: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``,
``error``, ``stop``. Frames to Telnyx: ``media`` (``media.payload``: base64 RTP
payload), ``mark`` (``mark.name``), ``clear``.

Rules :class:`TelnyxStreamProtocol` keeps:

1. ``connected`` is optional, and allowed only as the very first frame.
2. ``start`` comes exactly once, before any ``media``, ``dtmf``, ``mark`` or ``stop``.
3. ``media``, ``dtmf`` and ``mark`` arrive only between ``start`` and ``stop``;
   nothing but ``error`` arrives after ``stop``.
4. A frame's ``stream_id``, when present, equals the one ``start`` announced.
5. Frame order is not checked by ``sequence_number`` or ``media.chunk``: the page
   says "media frame order is not guaranteed"; frames are used as they arrive.
6. ``start.media_format`` is PCMU at 8000 Hz, mono; anything else is refused.
7. ``media`` on the ``outbound`` track (``both_tracks`` streaming) is ignored; the
   call hears only the caller's track.
8. An inbound ``mark`` echoes a mark we sent and that was not echoed yet (Telnyx
   echoes queued marks after ``clear`` too).
9. ``error`` frames are counted (:attr:`errors_received`) and change nothing else.
10. We send only between ``start`` and ``stop``, payloads of 1 to
    :data:`MAX_PAYLOAD_BYTES` bytes and non-empty mark names.
11. A rejected frame changes nothing.
"""

from __future__ import annotations

import json
from enum import Enum

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.stream_base import QueuedStream, check_dtmf_digit, check_ulaw_payload
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
    TransportEvent,
)
from voicerail.wire.twilio_parsing import _Fields, _load, _quote

DOC_URL = "https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket"
MAX_PAYLOAD_BYTES = 8_000
"""Largest media payload accepted or sent: one second of PCMU (our limit)."""


class TelnyxState(Enum):
    """Where a stream is in its life (rules 2 and 3)."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


_TRANSITIONS: dict[tuple[TelnyxState, str], TelnyxState] = {
    (TelnyxState.AWAITING_START, "start"): TelnyxState.STREAMING,
    (TelnyxState.STREAMING, "media"): TelnyxState.STREAMING,
    (TelnyxState.STREAMING, "dtmf"): TelnyxState.STREAMING,
    (TelnyxState.STREAMING, "mark"): TelnyxState.STREAMING,
    (TelnyxState.STREAMING, "stop"): TelnyxState.STOPPED,
}


class TelnyxStreamProtocol(QueuedStream):
    """One bidirectional Telnyx media stream; a
    :class:`~voicerail.wire.transport.MediaTransport`. No I/O."""

    name = "telnyx"

    def __init__(self) -> None:
        super().__init__()
        self.state = TelnyxState.AWAITING_START
        self._received_any = False
        self._pending_marks: list[str] = []
        self.errors_received = 0

    @property
    def sending(self) -> bool:
        return self.state is TelnyxState.STREAMING

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Marks sent and not echoed yet, oldest first."""
        return tuple(self._pending_marks)

    # -- inbound ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame from Telnyx and queue its event.

        Raises:
            ProtocolError: a binary frame, malformed JSON or a missing field, or a
                break of rules 1 to 8. Nothing changes.
        """
        if isinstance(data, bytes):
            raise ProtocolError(f"binary frame of {len(data)} bytes; telnyx sends text frames")
        event, fields = _load(data)
        first = not self._received_any
        if event == "connected":
            if not first:
                raise ProtocolError("'connected' is only allowed as the first frame", event=event)
            self._received_any = True
            return
        if event == "error":
            self._received_any = True
            self.errors_received += 1
            return
        if (self.state, event) not in _TRANSITIONS:
            raise ProtocolError(self._order_problem(event), event=event)
        if event != "start":
            self._check_stream_id(fields, event)
        handled = self._parse(event, fields)
        # Everything checked: apply (rule 11).
        self._received_any = True
        self.state = _TRANSITIONS[(self.state, event)]
        if handled is not None:
            if isinstance(handled, CallAnswered):
                self._call = handled
            elif isinstance(handled, PlaybackMarked):
                self._pending_marks.remove(handled.name)
            self._events.append(handled)

    def _parse(self, event: str, fields: _Fields) -> TransportEvent | None:
        if event == "start":
            return self._parse_start(fields)
        if event == "media":
            media = fields.child("media")
            payload = media.payload("payload", MAX_PAYLOAD_BYTES)
            track = media.string("track") if media.has("track") else "inbound"
            if track not in ("inbound", "outbound"):
                raise media.error("track", f"must be 'inbound' or 'outbound', got {_quote(track)}")
            if track == "outbound" or not payload:
                return None  # rule 7
            return AudioReceived(ulaw_to_pcm16(payload))
        if event == "dtmf":
            digit = fields.child("dtmf").string("digit")
            return DigitPressed(check_dtmf_digit(digit, "dtmf.digit", event))
        if event == "mark":
            name = fields.child("mark").string("name")
            if name not in self._pending_marks:
                raise ProtocolError(
                    f"mark {_quote(name)} was never sent or was already echoed", event=event
                )
            return PlaybackMarked(name)
        return CallHungUp()  # stop

    def _parse_start(self, fields: _Fields) -> CallAnswered:
        start = fields.child("start")
        stream_id = fields.string("stream_id")
        call_control_id = start.string("call_control_id")
        media_format = start.child("media_format")
        encoding = media_format.string("encoding")
        rate_hz = media_format.integer("sample_rate")
        channels = media_format.integer("channels") if media_format.has("channels") else 1
        if (encoding, rate_hz, channels) != ("PCMU", 8000, 1):
            raise ProtocolError(
                f"unsupported media format {_quote(encoding)} at {rate_hz} hz with {channels} "
                "channel(s); expected 'PCMU' at 8000 hz mono",
                event="start",
            )
        custom = start.string_map("custom_parameters") if start.has("custom_parameters") else {}
        caller = start.string("from") if start.has("from") else custom.get("from", "")
        return CallAnswered(
            call_ref=call_control_id,
            stream_ref=stream_id,
            caller=caller,
            custom_parameters=custom,
            tracks=("inbound",),
            encoding=encoding,
            sample_rate_hz=rate_hz,
        )

    def _check_stream_id(self, fields: _Fields, event: str) -> None:
        if not fields.has("stream_id"):
            return
        stream_id = fields.string("stream_id")
        if stream_id != self.stream_ref:
            raise ProtocolError(
                f"stream_id {_quote(stream_id)} in {event!r} frame does not match the "
                f"stream's {_quote(self.stream_ref or '')}",
                event=event,
            )

    def _order_problem(self, event: str) -> str:
        if (TelnyxState.STREAMING, event) not in _TRANSITIONS and event != "start":
            return f"unknown event {_quote(event)}"
        if self.state is TelnyxState.AWAITING_START:
            return f"expected 'start' event, got {event!r}"
        if self.state is TelnyxState.STOPPED:
            return f"unexpected {event!r} event after 'stop'"
        return f"unexpected second {event!r} event"

    # -- outbound --------------------------------------------------------------------

    def send_audio(self, ulaw: bytes) -> None:
        self._check_sending("media")
        payload = check_ulaw_payload(ulaw, "media", MAX_PAYLOAD_BYTES)
        self._outgoing.append(json.dumps({"event": "media", "media": {"payload": payload}}))

    def send_mark(self, name: str) -> None:
        self._check_sending("mark")
        if not name:
            raise LocalProtocolError("cannot send a mark with an empty name", event="mark")
        self._outgoing.append(json.dumps({"event": "mark", "mark": {"name": name}}))
        self._pending_marks.append(name)

    def send_clear(self) -> None:
        self._check_sending("clear")
        self._outgoing.append(json.dumps({"event": "clear"}))

    def _check_sending(self, event: str) -> None:
        if self.state is TelnyxState.AWAITING_START:
            raise LocalProtocolError(f"cannot send {event!r} before 'start'", event=event)
        if self.state is TelnyxState.STOPPED:
            raise LocalProtocolError(f"cannot send {event!r} after 'stop'", event=event)
