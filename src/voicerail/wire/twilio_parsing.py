"""Stateless parsing of Twilio Media Streams messages, both directions.

Implements "Media Streams - WebSocket Messages",
https://www.twilio.com/docs/voice/media-streams/websocket-messages (read 2026-11);
the message types are in :mod:`voicerail.wire.twilio_messages`.

Rules this module keeps:

1. A message is a JSON object of at most :data:`MAX_MESSAGE_BYTES` of UTF-8, with a
   known ``event``, every documented field present with its documented type, and a
   base64 ``payload`` of at most :data:`MAX_PAYLOAD_BYTES` once decoded. Anything
   else is a :class:`~voicerail.errors.ProtocolError` whose message names the field
   and the event.
2. Undocumented extra fields are ignored, so that additions on Twilio's side do not
   hang up calls.
3. ``sequenceNumber`` is optional (Twilio-compatible carriers omit it); the other
   documented fields are required, except ``start.customParameters`` (empty when
   absent) and the top-level ``streamSid`` of ``start`` (which must equal
   ``start.streamSid`` when present).
4. Error messages never quote personal data: DTMF digits, custom parameters and
   call SIDs are described by their type or length, never by their value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from voicerail.errors import ProtocolError
from voicerail.wire.twilio_messages import (
    DTMF,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    Clear,
    Connected,
    InboundMessage,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    OutboundMessage,
    Start,
    Stop,
)

__all__ = ["parse_inbound", "parse_outbound"]

_DTMF_KEYS = frozenset("0123456789*#ABCD")
_MAX_DECIMAL_DIGITS = 18  # keeps int() fast and far from Python's 4,300-digit guard


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(text: str, limit: int = 40) -> str:
    """Quote a peer-supplied string for an error message, truncated to ``limit``."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _Fields:
    """Typed access to one JSON object of a message; errors name the dotted path."""

    def __init__(self, data: Mapping[str, Any], event: str, prefix: str = "") -> None:
        self._data = data
        self._event = event
        self._prefix = prefix

    def error(self, key: str, problem: str) -> ProtocolError:
        where = f"field '{self._prefix}{key}' in '{self._event}' message"
        return ProtocolError(f"{where} {problem}", event=self._event)

    def _get(self, key: str, expected: type, description: str) -> Any:
        if key not in self._data:
            message = f"missing field '{self._prefix}{key}' in '{self._event}' message"
            raise ProtocolError(message, event=self._event)
        value = self._data[key]
        # JSON true/false are Python ints; they are never a valid integer here.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise self.error(key, f"must be {description}, got {_json_type(value)}")
        return value

    def has(self, key: str) -> bool:
        return key in self._data

    def mapping(self) -> Mapping[str, Any]:
        """The object itself (read only), for messages with free-form keys."""
        return self._data

    def string(self, key: str) -> str:
        value: str = self._get(key, str, "a string")
        return value

    def integer(self, key: str) -> int:
        value: int = self._get(key, int, "an integer")
        return value

    def decimal(self, key: str) -> int:
        """A non-negative integer sent as a string of decimal digits."""
        text = self.string(key)
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DECIMAL_DIGITS):
            raise self.error(key, f"must be a string of decimal digits, got {_quote(text)}")
        return int(text)

    def optional_decimal(self, key: str) -> int | None:
        return self.decimal(key) if self.has(key) else None

    def child(self, key: str) -> _Fields:
        value: dict[str, Any] = self._get(key, dict, "an object")
        return _Fields(value, self._event, f"{self._prefix}{key}.")

    def strings(self, key: str) -> tuple[str, ...]:
        values: list[Any] = self._get(key, list, "an array of strings")
        if not all(isinstance(value, str) for value in values):
            raise self.error(key, "must be an array of strings")
        return tuple(values)

    def string_map(self, key: str) -> dict[str, str]:
        values: dict[str, Any] = self._get(key, dict, "an object of strings")
        if not all(isinstance(value, str) for value in values.values()):
            # Custom parameters are personal data: no keys or values in the message.
            raise self.error(key, "must map names to strings")
        return dict(values)

    def payload(self, key: str, limit: int | None = MAX_PAYLOAD_BYTES) -> bytes:
        text = self.string(key)
        try:
            payload = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                f"{self._event} payload is not valid base64", event=self._event
            ) from None
        if limit is not None and len(payload) > limit:
            raise ProtocolError(
                f"{self._event} payload of {len(payload)} bytes exceeds the limit of {limit}",
                event=self._event,
            )
        return payload


def _load(data: str | bytes) -> tuple[str, _Fields]:
    """Check size and syntax; return the event name and the message's fields."""
    if isinstance(data, bytes):
        num_bytes = len(data)
    else:
        num_bytes = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    if num_bytes > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"message of {num_bytes} bytes exceeds the limit of {MAX_MESSAGE_BYTES}"
        )
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"message is not valid utf-8 (byte {exc.start})") from None
    try:
        obj = _DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"message is not valid json (line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):  # integers past 4,300 digits; deep nesting
        raise ProtocolError("message is not valid json") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"message must be a json object, got {_json_type(obj)}")
    if "event" not in obj:
        raise ProtocolError("missing field 'event'")
    event = obj["event"]
    if not isinstance(event, str):
        raise ProtocolError(f"field 'event' must be a string, got {_json_type(event)}")
    return event, _Fields(obj, event)


def _reject_constant(name: str) -> float:
    # NaN and Infinity are Python extensions, not JSON numbers (RFC 8259 section 6).
    raise ProtocolError(f"message is not valid json ({name} is not a json number)")


# One decoder for every message: json.loads with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_connected(fields: _Fields) -> Connected:
    return Connected(protocol=fields.string("protocol"), version=fields.string("version"))


def _parse_start(fields: _Fields) -> Start:
    start = fields.child("start")
    stream_sid = start.string("streamSid")
    # Twilio repeats the stream SID at the top level; both must agree when present.
    if fields.has("streamSid") and fields.string("streamSid") != stream_sid:
        raise fields.error("streamSid", "does not match 'start.streamSid'")
    fmt = start.child("mediaFormat")
    parameters = start.string_map("customParameters") if start.has("customParameters") else {}
    return Start(
        sequence_number=fields.optional_decimal("sequenceNumber"),
        stream_sid=stream_sid,
        account_sid=start.string("accountSid"),
        call_sid=start.string("callSid"),
        tracks=start.strings("tracks"),
        custom_parameters=parameters,
        media_format=MediaFormat(
            encoding=fmt.string("encoding"),
            sample_rate_hz=fmt.integer("sampleRate"),
            channels=fmt.integer("channels"),
        ),
    )


def _parse_media(fields: _Fields) -> Media:
    media = fields.child("media")
    return Media(
        sequence_number=fields.optional_decimal("sequenceNumber"),
        stream_sid=fields.string("streamSid"),
        track=media.string("track"),
        chunk=media.decimal("chunk"),
        timestamp_ms=media.decimal("timestamp"),
        payload=media.payload("payload"),
    )


def _parse_dtmf(fields: _Fields) -> DTMF:
    dtmf = fields.child("dtmf")
    digit = dtmf.string("digit")
    if digit not in _DTMF_KEYS:
        # Digits are personal data: describe the value, never quote it.
        raise dtmf.error(
            "digit", f"must be one key of 0-9, *, #, A-D, got a string of length {len(digit)}"
        )
    return DTMF(
        sequence_number=fields.optional_decimal("sequenceNumber"),
        stream_sid=fields.string("streamSid"),
        track=dtmf.string("track"),
        digit=digit,
    )


def _parse_mark(fields: _Fields) -> Mark:
    return Mark(
        sequence_number=fields.optional_decimal("sequenceNumber"),
        stream_sid=fields.string("streamSid"),
        name=fields.child("mark").string("name"),
    )


def _parse_stop(fields: _Fields) -> Stop:
    stop = fields.child("stop")
    return Stop(
        sequence_number=fields.optional_decimal("sequenceNumber"),
        stream_sid=fields.string("streamSid"),
        account_sid=stop.string("accountSid"),
        call_sid=stop.string("callSid"),
    )


_INBOUND: dict[str, Callable[[_Fields], InboundMessage]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def _parse_outbound_media(fields: _Fields) -> OutboundMedia:
    # Twilio documents no size limit for audio sent to it, and servers send up to
    # seconds per message (Pipecat's serializer does): only the message limit applies.
    payload = fields.child("media").payload("payload", limit=None)
    return OutboundMedia(stream_sid=fields.string("streamSid"), payload=payload)


def _parse_outbound_mark(fields: _Fields) -> OutboundMark:
    name = fields.child("mark").string("name")
    return OutboundMark(stream_sid=fields.string("streamSid"), name=name)


def _parse_clear(fields: _Fields) -> Clear:
    return Clear(stream_sid=fields.string("streamSid"))


_OUTBOUND: dict[str, Callable[[_Fields], OutboundMessage]] = {
    "media": _parse_outbound_media,
    "mark": _parse_outbound_mark,
    "clear": _parse_clear,
}


def parse_inbound(data: str | bytes) -> InboundMessage:
    """Parse one message Twilio sent (one WebSocket text frame). Stateless.

    Args:
        data: the frame's JSON text, or its UTF-8 bytes.

    Returns:
        The message, with numbers as integers and the payload decoded.

    Raises:
        ProtocolError: the frame exceeds :data:`MAX_MESSAGE_BYTES`, is not UTF-8 or
            not a JSON object, names an unknown ``event``, lacks a documented field,
            has one of the wrong type, or carries a payload that is not base64 or
            exceeds :data:`MAX_PAYLOAD_BYTES` once decoded.
    """
    event, fields = _load(data)
    parser = _INBOUND.get(event)
    if parser is None:
        raise ProtocolError(f"unknown event {_quote(event)}", event=event)
    return parser(fields)


def parse_outbound(data: str | bytes) -> OutboundMessage:
    """Parse one message sent to Twilio; for simulated callers and tests. Stateless.

    Args:
        data: the frame's JSON text, or its UTF-8 bytes.

    Returns:
        :class:`OutboundMedia`, :class:`OutboundMark` or :class:`Clear`.

    Raises:
        ProtocolError: for the same reasons as :func:`parse_inbound`, with the
            outbound events ``media``, ``mark`` and ``clear``, except that a
            payload may exceed :data:`MAX_PAYLOAD_BYTES` (Twilio documents no
            limit on what it is sent; the message limit still applies).
    """
    event, fields = _load(data)
    parser = _OUTBOUND.get(event)
    if parser is None:
        raise ProtocolError(f"unknown event {_quote(event)}", event=event)
    return parser(fields)
