"""The server side of one Plivo Audio Stream, as a sans-I/O protocol object.

Implements Plivo's Audio Streaming WebSocket messages
(https://www.plivo.com/docs/voice/audio-streaming/audio-streaming, the
``checkpoint`` event https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event
and ``clearAudio``, read 2026-12) for a stream started by
``<Stream bidirectional="true" keepCallAlive="true"
contentType="audio/x-mulaw;rate=8000">`` (https://www.plivo.com/docs/voice/xml/audiostream).

Frames from Plivo: ``start``, ``media``, ``dtmf``, ``playedStream``,
``clearedAudio``; the stream ends when the socket closes (there is no inbound
``stop``). Frames to Plivo: ``playAudio``, ``checkpoint``, ``clearAudio``.

Rules :class:`PlivoStreamProtocol` keeps:

1. ``start`` is the first frame, exactly once.
2. ``media``, ``dtmf``, ``playedStream`` and ``clearedAudio`` arrive only after it.
3. A frame's ``streamId``, when present, equals the one ``start`` announced.
4. ``sequenceNumber``, when present, strictly increases ("starts at 1,
   increments for each subsequent message").
5. ``start.mediaFormat`` is ``audio/x-mulaw`` at 8000 Hz, the ``contentType`` our
   ``<Stream>`` asks for. (Plivo's default is ``audio/x-l16;rate=8000``; its page
   does not say the byte order, so it is refused rather than guessed.)
6. ``playedStream`` names a checkpoint we sent and that was not acknowledged yet.
7. ``clearedAudio`` forgets every pending checkpoint: Plivo emits
   ``playedStream`` "only if the preceding events were played successfully".
8. Unknown events are refused, naming the event.
9. We send only after ``start``: μ-law payloads of 1 to :data:`MAX_PAYLOAD_BYTES`
   bytes and non-empty checkpoint names.
10. A rejected frame changes nothing. The hang-up is the socket closing: the
    driver ends the call when the frames stop.
"""

from __future__ import annotations

import json

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.stream_base import QueuedStream, check_dtmf_digit, check_ulaw_payload
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    DigitPressed,
    PlaybackMarked,
    TransportEvent,
)
from voicerail.wire.twilio_parsing import _Fields, _load, _quote

DOC_URL = "https://www.plivo.com/docs/voice/audio-streaming/audio-streaming"
MAX_PAYLOAD_BYTES = 8_000
"""Largest payload accepted or sent: one second of μ-law at 8 kHz (our limit)."""
_FORMATS = {("audio/x-mulaw", 8000)}
_AFTER_START = frozenset({"media", "dtmf", "playedStream", "clearedAudio"})


def parse_extra_headers(text: str) -> dict[str, str]:
    """``extra_headers`` of ``start`` (``"a=1;b=2"`` or ``"a=1,b=2"``) as a dict."""
    pairs = (item.split("=", 1) for item in text.replace(",", ";").split(";") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


class PlivoStreamProtocol(QueuedStream):
    """One bidirectional Plivo Audio Stream; a
    :class:`~voicerail.wire.transport.MediaTransport`. No I/O."""

    name = "plivo"

    def __init__(self) -> None:
        super().__init__()
        self._last_sequence_number: int | None = None
        self._pending: list[str] = []

    @property
    def sending(self) -> bool:
        return self._call is not None

    @property
    def pending_checkpoints(self) -> tuple[str, ...]:
        """Checkpoints sent and not acknowledged, oldest first."""
        return tuple(self._pending)

    # -- inbound ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame from Plivo and queue its event.

        Raises:
            ProtocolError: a binary frame, malformed JSON, a missing field, or a
                break of rules 1 to 8. Nothing changes.
        """
        if isinstance(data, bytes):
            raise ProtocolError(f"binary frame of {len(data)} bytes; plivo sends text frames")
        event, fields = _load(data)
        if event != "start" and event not in _AFTER_START:
            raise ProtocolError(f"unknown event {_quote(event)}", event=event)
        if event == "start" and self._call is not None:
            raise ProtocolError("unexpected second 'start' event", event=event)
        if event != "start" and self._call is None:
            raise ProtocolError(f"expected 'start' event, got {event!r}", event=event)
        sequence_number = self._check_sequence(fields, event)
        parsed: TransportEvent | None
        if event == "start":
            parsed = self._parse_start(fields)
        else:
            self._check_stream_id(fields, event)
            parsed = self._parse(event, fields)
        # Checked: apply (rule 10).
        if sequence_number is not None:
            self._last_sequence_number = sequence_number
        if isinstance(parsed, CallAnswered):
            self._call = parsed
        elif isinstance(parsed, PlaybackMarked):
            self._pending.remove(parsed.name)
        elif event == "clearedAudio":
            self._pending.clear()  # rule 7
        if parsed is not None:
            self._events.append(parsed)

    def _parse(self, event: str, fields: _Fields) -> TransportEvent | None:
        if event == "media":
            media = fields.child("media")
            payload = media.payload("payload", MAX_PAYLOAD_BYTES)
            if not payload:
                return None
            return AudioReceived(ulaw_to_pcm16(payload))
        if event == "dtmf":
            digit = fields.child("dtmf").string("digit")
            return DigitPressed(check_dtmf_digit(digit, "dtmf.digit", event))
        if event == "playedStream":
            name = fields.string("name")
            if name not in self._pending:
                raise ProtocolError(
                    f"checkpoint {_quote(name)} was never sent or was already played",
                    event=event,
                )
            return PlaybackMarked(name)
        return None  # clearedAudio

    def _parse_start(self, fields: _Fields) -> CallAnswered:
        start = fields.child("start")
        media_format = start.child("mediaFormat")
        encoding = media_format.string("encoding")
        rate_hz = media_format.integer("sampleRate")
        if (encoding, rate_hz) not in _FORMATS:
            raise ProtocolError(
                f"unsupported media format {_quote(encoding)} at {rate_hz} hz; expected "
                "'audio/x-mulaw' at 8000 hz",
                event="start",
            )
        tracks = start.strings("tracks") if start.has("tracks") else ("inbound",)
        headers = (
            parse_extra_headers(fields.string("extra_headers"))
            if fields.has("extra_headers")
            else {}
        )
        return CallAnswered(
            call_ref=start.string("callId"),
            stream_ref=start.string("streamId"),
            caller=headers.get("from", ""),
            custom_parameters=headers,
            tracks=tracks,
            encoding=encoding,
            sample_rate_hz=rate_hz,
        )

    def _check_sequence(self, fields: _Fields, event: str) -> int | None:
        if not fields.has("sequenceNumber"):
            return None
        number = fields.integer("sequenceNumber")
        last = self._last_sequence_number
        if last is not None and number <= last:
            raise ProtocolError(
                f"sequenceNumber {number} in {event!r} message is not greater than the "
                f"previous {last}",
                event=event,
            )
        return number

    def _check_stream_id(self, fields: _Fields, event: str) -> None:
        if fields.has("streamId") and fields.string("streamId") != self.stream_ref:
            raise ProtocolError(
                f"streamId {_quote(fields.string('streamId'))} in {event!r} message does not "
                f"match the stream's {_quote(self.stream_ref or '')}",
                event=event,
            )

    # -- outbound --------------------------------------------------------------------

    def send_audio(self, ulaw: bytes) -> None:
        self._check_sending("playAudio")
        media = {
            "contentType": "audio/x-mulaw",
            "sampleRate": 8000,
            "payload": check_ulaw_payload(ulaw, "playAudio", MAX_PAYLOAD_BYTES),
        }
        self._outgoing.append(json.dumps({"event": "playAudio", "media": media}))

    def send_mark(self, name: str) -> None:
        stream_id = self._check_sending("checkpoint")
        if not name:
            raise LocalProtocolError(
                "cannot send a checkpoint with an empty name", event="checkpoint"
            )
        message = {"event": "checkpoint", "streamId": stream_id, "name": name}
        self._outgoing.append(json.dumps(message))
        self._pending.append(name)

    def send_clear(self) -> None:
        stream_id = self._check_sending("clearAudio")
        self._outgoing.append(json.dumps({"event": "clearAudio", "streamId": stream_id}))

    def _check_sending(self, event: str) -> str:
        if self._call is None:
            raise LocalProtocolError(f"cannot send {event!r} before 'start'", event=event)
        return self._call.stream_ref
