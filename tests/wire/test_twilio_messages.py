"""Twilio Media Streams messages: serialization shape and round trips."""

from __future__ import annotations

import base64
import json

import pytest

from voicerail.wire.twilio_messages import (
    DTMF,
    MULAW_8000_MONO,
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
    build_start,
    serialize_inbound,
)
from voicerail.wire.twilio_parsing import parse_inbound, parse_outbound

STREAM = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ACCOUNT = "AC" + "3" * 32

INBOUND: list[InboundMessage] = [
    Connected(protocol="Call", version="1.0.0"),
    Start(
        sequence_number=1,
        stream_sid=STREAM,
        account_sid=ACCOUNT,
        call_sid=CALL,
        tracks=("inbound", "outbound"),
        custom_parameters={"tenant": "acme", "token": "t-1"},
        media_format=MULAW_8000_MONO,
    ),
    Start(
        sequence_number=None,
        stream_sid=STREAM,
        account_sid=ACCOUNT,
        call_sid=CALL,
        tracks=(),
        custom_parameters={},
        media_format=MediaFormat("audio/x-l16", 16000, 2),
    ),
    Media(
        sequence_number=3,
        stream_sid=STREAM,
        track="inbound",
        chunk=1,
        timestamp_ms=5,
        payload=bytes(range(256)),
    ),
    Media(
        sequence_number=None,
        stream_sid=STREAM,
        track="outbound",
        chunk=0,
        timestamp_ms=0,
        payload=b"",
    ),
    DTMF(sequence_number=4, stream_sid=STREAM, track="inbound_track", digit="#"),
    Mark(sequence_number=5, stream_sid=STREAM, name="sentence-1"),
    Mark(sequence_number=None, stream_sid=STREAM, name="ünïcode ✓"),
    Stop(sequence_number=6, stream_sid=STREAM, account_sid=ACCOUNT, call_sid=CALL),
]

OUTBOUND: list[OutboundMessage] = [
    OutboundMedia(stream_sid=STREAM, payload=b"\xff" * 160),
    OutboundMedia(stream_sid=STREAM, payload=b""),
    OutboundMark(stream_sid=STREAM, name="reply-3"),
    Clear(stream_sid=STREAM),
]


@pytest.mark.parametrize("message", INBOUND, ids=lambda m: type(m).__name__)
def test_inbound_messages_round_trip(message: InboundMessage) -> None:
    """Serializing an inbound message and parsing it back gives the same message."""
    text = serialize_inbound(message)
    assert parse_inbound(text) == message
    assert parse_inbound(text.encode("utf-8")) == message


@pytest.mark.parametrize("message", OUTBOUND, ids=lambda m: type(m).__name__)
def test_outbound_messages_round_trip(message: OutboundMessage) -> None:
    """Serializing an outbound message and parsing it back gives the same message."""
    assert parse_outbound(message.serialize()) == message


def test_media_is_serialized_as_twilio_sends_it() -> None:
    """Numbers become strings of digits and the payload becomes base64."""
    media = Media(
        sequence_number=3,
        stream_sid=STREAM,
        track="inbound",
        chunk=1,
        timestamp_ms=5,
        payload=b"ab",
    )
    assert json.loads(serialize_inbound(media)) == {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "YWI="},
        "streamSid": STREAM,
    }


def test_start_is_serialized_as_twilio_sends_it() -> None:
    """Start carries its metadata under 'start' and repeats the streamSid at the top."""
    start = build_start(STREAM, CALL, account_sid=ACCOUNT, custom_parameters={"k": "v"})
    assert json.loads(serialize_inbound(start)) == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT,
            "streamSid": STREAM,
            "callSid": CALL,
            "tracks": ["inbound"],
            "customParameters": {"k": "v"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": STREAM,
    }


def test_a_missing_sequence_number_is_omitted() -> None:
    """A message without a sequence number has no 'sequenceNumber' field."""
    mark = Mark(sequence_number=None, stream_sid=STREAM, name="m")
    assert "sequenceNumber" not in json.loads(serialize_inbound(mark))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            OutboundMedia(STREAM, b"\x00\x01"),
            {"event": "media", "streamSid": STREAM, "media": {"payload": "AAE="}},
        ),
        (
            OutboundMark(STREAM, "m1"),
            {"event": "mark", "streamSid": STREAM, "mark": {"name": "m1"}},
        ),
        (Clear(STREAM), {"event": "clear", "streamSid": STREAM}),
    ],
    ids=["media", "mark", "clear"],
)
def test_outbound_messages_have_the_documented_shape(
    message: OutboundMessage, expected: dict[str, object]
) -> None:
    """Outbound messages serialize to the JSON documented under 'Send … message'."""
    assert json.loads(message.serialize()) == expected


def test_serialized_messages_are_compact_ascii() -> None:
    """Serialized text has no spaces between tokens and escapes non-ASCII characters."""
    text = OutboundMark(STREAM, "café").serialize()
    assert text.isascii()
    assert ", " not in text
    assert ": " not in text


def test_build_start_announces_mulaw_8000_mono() -> None:
    """build_start fills in the format and defaults a simulated caller needs."""
    parameters = {"token": "abc"}
    start = build_start(STREAM, CALL, custom_parameters=parameters)
    parameters["token"] = "changed"
    assert start.media_format == MediaFormat("audio/x-mulaw", 8000, 1)
    assert start.sequence_number == 1
    assert start.tracks == ("inbound",)
    assert start.custom_parameters == {"token": "abc"}
    assert start.account_sid.startswith("AC")
    assert build_start(STREAM, CALL).custom_parameters == {}


def test_messages_are_frozen_and_start_is_hashable() -> None:
    """Messages cannot be changed; a Start hashes without its parameter dict."""
    start = build_start(STREAM, CALL, custom_parameters={"a": "b"})
    with pytest.raises(AttributeError):
        start.call_sid = "CAx"  # type: ignore[misc]
    assert hash(start) == hash(build_start(STREAM, CALL, custom_parameters={"c": "d"}))


def test_media_payload_round_trips_every_byte_value() -> None:
    """Every μ-law byte value survives base64 both ways."""
    payload = bytes(range(256)) * 4
    text = OutboundMedia(STREAM, payload).serialize()
    assert base64.b64decode(json.loads(text)["media"]["payload"]) == payload
    assert parse_outbound(text) == OutboundMedia(STREAM, payload)
