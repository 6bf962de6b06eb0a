"""Twilio Media Streams messages, both directions, and their serialization.

Implements "Media Streams - WebSocket Messages",
https://www.twilio.com/docs/voice/media-streams/websocket-messages (read 2026-11).
Each message class cites its section of that page. Parsing lives in
:mod:`voicerail.wire.twilio_parsing`; both are re-exported by
:mod:`voicerail.wire.twilio`.

Rules this module keeps:

1. Messages are frozen dataclasses named after the spec; numbers Twilio sends as
   strings of decimal digits (``sequenceNumber``, ``chunk``, ``timestamp``) are
   integers here and strings again on the wire; payloads are raw bytes here and
   base64 on the wire.
2. ``sequence_number`` is None when a message carries none; serializing omits it.
3. Serialization does not validate: it writes what it is given. Sending code
   validates (see :class:`~voicerail.wire.twilio.TwilioStreamProtocol`).
4. Every message round-trips through its parser and serializer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "DOC_URL",
    "DTMF",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MULAW_8000_MONO",
    "Clear",
    "Connected",
    "InboundMessage",
    "Mark",
    "Media",
    "MediaFormat",
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "Start",
    "Stop",
    "build_start",
    "serialize_inbound",
]

DOC_URL = "https://www.twilio.com/docs/voice/media-streams/websocket-messages"

MAX_MESSAGE_BYTES = 65_536
"""Largest accepted message, UTF-8 bytes. Twilio's are a few hundred bytes."""

MAX_PAYLOAD_BYTES = 8_000
"""Largest accepted decoded media payload: one second of μ-law at 8 kHz.

Twilio sends 160-byte (20 ms) chunks; this is our limit, not one Twilio documents.
"""


# -- messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """The audio format announced by ``start`` (``start.mediaFormat``).

    Attributes:
        encoding: MIME type, ``"audio/x-mulaw"`` for Twilio.
        sample_rate_hz: samples per second, 8000 for Twilio.
        channels: number of channels, 1 for Twilio.
    """

    encoding: str
    sample_rate_hz: int
    channels: int


MULAW_8000_MONO = MediaFormat("audio/x-mulaw", 8000, 1)
"""The only format Twilio Media Streams use: G.711 μ-law, 8 kHz, mono."""


@dataclass(frozen=True, slots=True)
class Connected:
    """First message of a stream; describes the protocol (section "Connected message").

    Attributes:
        protocol: protocol name, ``"Call"``.
        version: semantic version of the protocol, e.g. ``"1.0.0"``.
    """

    event: ClassVar[str] = "connected"
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    """Stream metadata, sent once after ``connected`` (section "Start message").

    Attributes:
        sequence_number: position of the message in the stream (1 first), or None.
        stream_sid: the stream's identifier (``MZ…``).
        account_sid: the account that created the stream (``AC…``).
        call_sid: the call the stream belongs to (``CA…``); personal data.
        tracks: the media tracks that will follow, e.g. ``("inbound",)``.
        custom_parameters: the ``<Parameter>`` values of the TwiML ``<Stream>``;
            personal data; left out of the hash (a dict is not hashable).
        media_format: the format of every ``media`` payload.
    """

    event: ClassVar[str] = "start"
    sequence_number: int | None
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(hash=False)
    media_format: MediaFormat


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of call audio (section "Media message").

    Attributes:
        sequence_number: position of the message in the stream, or None.
        stream_sid: the stream's identifier.
        track: ``"inbound"`` (the caller) or ``"outbound"``.
        chunk: chunk number on this track, 1 first.
        timestamp_ms: presentation time, milliseconds since the stream started.
        payload: raw audio in ``start.media_format`` (μ-law, 8 kHz, mono, one byte
            per sample; 160 bytes per 20 ms), decoded from base64.
    """

    event: ClassVar[str] = "media"
    sequence_number: int | None
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DTMF:
    """A key the caller pressed (section "DTMF message").

    Attributes:
        sequence_number: position of the message in the stream, or None.
        stream_sid: the stream's identifier.
        track: ``"inbound_track"``.
        digit: one of ``0-9``, ``*``, ``#``, ``A-D``; personal data.
    """

    event: ClassVar[str] = "dtmf"
    sequence_number: int | None
    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Echo of a mark we sent: the audio before it was played or cleared.

    Section "Mark message" (bidirectional streams only).

    Attributes:
        sequence_number: position of the message in the stream, or None.
        stream_sid: the stream's identifier.
        name: the name we gave the mark.
    """

    event: ClassVar[str] = "mark"
    sequence_number: int | None
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Last message: the stream ended, usually because the call did ("Stop message").

    Attributes:
        sequence_number: position of the message in the stream, or None.
        stream_sid: the stream's identifier.
        account_sid: the account that created the stream.
        call_sid: the call the stream belonged to; personal data.
    """

    event: ClassVar[str] = "stop"
    sequence_number: int | None
    stream_sid: str
    account_sid: str
    call_sid: str


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """Audio for Twilio to play to the caller (section "Send a Media message").

    Attributes:
        stream_sid: the stream to play on.
        payload: μ-law audio, 8 kHz, mono, one byte per sample; sent as base64.
    """

    event: ClassVar[str] = "media"
    stream_sid: str
    payload: bytes

    def serialize(self) -> str:
        """Return the message as JSON text."""
        media = {"payload": base64.b64encode(self.payload).decode("ascii")}
        return _dumps({"event": "media", "streamSid": self.stream_sid, "media": media})


@dataclass(frozen=True, slots=True)
class OutboundMark:
    """A named point in the audio sent so far (section "Send a Mark message").

    Twilio echoes it as a :class:`Mark` once the audio before it has played, or when
    a ``clear`` discards that audio.

    Attributes:
        stream_sid: the stream.
        name: the mark's name, echoed back unchanged.
    """

    event: ClassVar[str] = "mark"
    stream_sid: str
    name: str

    def serialize(self) -> str:
        """Return the message as JSON text."""
        mark = {"name": self.name}
        return _dumps({"event": "mark", "streamSid": self.stream_sid, "mark": mark})


@dataclass(frozen=True, slots=True)
class Clear:
    """Discard the audio Twilio has buffered but not yet played ("Send a Clear message").

    Used for barge-in. Pending marks are echoed back.

    Attributes:
        stream_sid: the stream.
    """

    event: ClassVar[str] = "clear"
    stream_sid: str

    def serialize(self) -> str:
        """Return the message as JSON text."""
        return _dumps({"event": "clear", "streamSid": self.stream_sid})


InboundMessage = Connected | Start | Media | DTMF | Mark | Stop
"""A message Twilio sends to our WebSocket server."""

OutboundMessage = OutboundMedia | OutboundMark | Clear
"""A message our WebSocket server sends to Twilio."""


def build_start(
    stream_sid: str,
    call_sid: str,
    *,
    account_sid: str = "AC" + "0" * 32,
    custom_parameters: Mapping[str, str] | None = None,
    sequence_number: int | None = 1,
    tracks: tuple[str, ...] = ("inbound",),
) -> Start:
    """Build the ``start`` message of a ``<Connect><Stream>`` call, for simulated callers.

    Args:
        stream_sid: the stream's identifier.
        call_sid: the call's identifier.
        account_sid: the account's identifier; a placeholder by default.
        custom_parameters: the stream's ``<Parameter>`` values.
        sequence_number: 1, as Twilio numbers ``start`` (after an unnumbered
            ``connected``).
        tracks: the announced tracks.

    Returns:
        A :class:`Start` announcing μ-law at 8 kHz, mono.
    """
    return Start(
        sequence_number=sequence_number,
        stream_sid=stream_sid,
        account_sid=account_sid,
        call_sid=call_sid,
        tracks=tracks,
        custom_parameters=dict(custom_parameters or {}),
        media_format=MULAW_8000_MONO,
    )


# -- serialization --------------------------------------------------------------------


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _numbered(event: str, sequence_number: int | None) -> dict[str, Any]:
    head: dict[str, Any] = {"event": event}
    if sequence_number is not None:
        head["sequenceNumber"] = str(sequence_number)
    return head


def serialize_inbound(message: InboundMessage) -> str:
    """Serialize a message as Twilio sends it; for simulated callers and tests.

    Args:
        message: any inbound message.

    Returns:
        JSON text with the field names and string-typed numbers Twilio uses.
    """
    if isinstance(message, Connected):
        obj = {"event": "connected", "protocol": message.protocol, "version": message.version}
        return _dumps(obj)
    head = _numbered(message.event, message.sequence_number)
    if isinstance(message, Start):
        fmt = message.media_format
        head["start"] = {
            "accountSid": message.account_sid,
            "streamSid": message.stream_sid,
            "callSid": message.call_sid,
            "tracks": list(message.tracks),
            "customParameters": dict(message.custom_parameters),
            "mediaFormat": {
                "encoding": fmt.encoding,
                "sampleRate": fmt.sample_rate_hz,
                "channels": fmt.channels,
            },
        }
    elif isinstance(message, Media):
        head["media"] = {
            "track": message.track,
            "chunk": str(message.chunk),
            "timestamp": str(message.timestamp_ms),
            "payload": base64.b64encode(message.payload).decode("ascii"),
        }
    elif isinstance(message, DTMF):
        head["dtmf"] = {"track": message.track, "digit": message.digit}
    elif isinstance(message, Mark):
        head["mark"] = {"name": message.name}
    else:
        head["stop"] = {"accountSid": message.account_sid, "callSid": message.call_sid}
    head["streamSid"] = message.stream_sid
    return _dumps(head)
