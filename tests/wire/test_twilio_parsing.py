"""Parsing Twilio Media Streams messages: documented examples and every malformed case."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voicerail.errors import ProtocolError
from voicerail.wire.twilio_messages import (
    DTMF,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    MULAW_8000_MONO,
    Clear,
    Connected,
    Mark,
    Media,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
)
from voicerail.wire.twilio_parsing import parse_inbound, parse_outbound

STREAM = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ACCOUNT = "AC" + "3" * 32


def _start(**changes: Any) -> dict[str, Any]:
    start = {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "customParameters": {"tenant": "acme"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    start.update(changes)
    return {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": STREAM}


def _media(**changes: Any) -> dict[str, Any]:
    media = {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "/w=="}
    media.update(changes)
    return {"event": "media", "sequenceNumber": "2", "media": media, "streamSid": STREAM}


def _without(message: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(message))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


def _raises(data: str | bytes, parse: Any = parse_inbound) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    return info.value


# -- documented examples -------------------------------------------------------------


def test_parses_the_documented_messages() -> None:
    """Messages shaped like the page's examples parse to the expected dataclasses."""
    assert parse_inbound('{"event": "connected", "protocol": "Call", "version": "1.0.0"}') == (
        Connected("Call", "1.0.0")
    )
    assert parse_inbound(json.dumps(_start())) == Start(
        sequence_number=1,
        stream_sid=STREAM,
        account_sid=ACCOUNT,
        call_sid=CALL,
        tracks=("inbound",),
        custom_parameters={"tenant": "acme"},
        media_format=MULAW_8000_MONO,
    )
    assert parse_inbound(json.dumps(_media())) == Media(
        sequence_number=2,
        stream_sid=STREAM,
        track="inbound",
        chunk=1,
        timestamp_ms=5,
        payload=b"\xff",
    )
    dtmf = {
        "event": "dtmf",
        "streamSid": STREAM,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "1"},
    }
    assert parse_inbound(json.dumps(dtmf)) == DTMF(5, STREAM, "inbound_track", "1")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "m"}}
    assert parse_inbound(json.dumps(mark)) == Mark(4, STREAM, "m")
    stop = {
        "event": "stop",
        "sequenceNumber": "5",
        "streamSid": STREAM,
        "stop": {"accountSid": ACCOUNT, "callSid": CALL},
    }
    assert parse_inbound(json.dumps(stop)) == Stop(5, STREAM, ACCOUNT, CALL)


def test_parses_the_documented_outbound_messages() -> None:
    """The three messages a server sends to Twilio parse back to their dataclasses."""
    media = {"event": "media", "streamSid": STREAM, "media": {"payload": "AAE="}}
    assert parse_outbound(json.dumps(media)) == OutboundMedia(STREAM, b"\x00\x01")
    mark = {"event": "mark", "streamSid": STREAM, "mark": {"name": "x"}}
    assert parse_outbound(json.dumps(mark)) == OutboundMark(STREAM, "x")
    assert parse_outbound(json.dumps({"event": "clear", "streamSid": STREAM})) == Clear(STREAM)


def test_undocumented_fields_are_ignored() -> None:
    """Extra fields, as Twilio may add, do not make a message invalid."""
    message = _media(extra=True)
    message["future"] = {"a": 1}
    assert isinstance(parse_inbound(json.dumps(message)), Media)


def test_optional_fields_may_be_absent() -> None:
    """sequenceNumber, customParameters and the top-level streamSid of start are optional."""
    start = _without(_without(_start(), "sequenceNumber"), "start", "customParameters")
    start = _without(start, "streamSid")
    parsed = parse_inbound(json.dumps(start))
    assert isinstance(parsed, Start)
    assert parsed.sequence_number is None
    assert parsed.custom_parameters == {}
    assert parsed.stream_sid == STREAM


def test_a_payload_at_the_limit_is_accepted() -> None:
    """A payload of exactly MAX_PAYLOAD_BYTES parses."""
    payload = base64.b64encode(b"\x7f" * MAX_PAYLOAD_BYTES).decode()
    parsed = parse_inbound(json.dumps(_media(payload=payload)))
    assert isinstance(parsed, Media)
    assert len(parsed.payload) == MAX_PAYLOAD_BYTES


# -- malformed messages --------------------------------------------------------------


def _padded(num_bytes: int, filler: str = "a") -> str:
    """A JSON message of exactly ``num_bytes`` UTF-8 bytes."""
    head = '{"event":"media","x":"'
    tail = '"}'
    room = num_bytes - len(head) - len(tail)
    return head + filler * (room // len(filler.encode())) + tail


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_padded(70_000), "message of 70000 bytes exceeds the limit of 65536"),
        (_padded(70_000, "é"), "message of 70000 bytes exceeds the limit of 65536"),
        (_padded(70_000).encode(), "message of 70000 bytes exceeds the limit of 65536"),
        (b"\xff{}", "message is not valid utf-8 (byte 0)"),
        ("not json", "message is not valid json (line 1 column 1)"),
        ('{"event": "media",', "message is not valid json (line 1 column 19)"),
        ("", "message is not valid json (line 1 column 1)"),
        ('{"event": NaN}', "message is not valid json (NaN is not a json number)"),
        (
            '{"event": "x", "n": -Infinity}',
            "message is not valid json (-Infinity is not a json number)",
        ),
        ("[" * 30_000, "message is not valid json"),
        ('{"n": ' + "1" * 5_000 + "}", "message is not valid json"),
        ("[1, 2]", "message must be a json object, got array"),
        ('"media"', "message must be a json object, got string"),
        ("3.5", "message must be a json object, got number"),
        ("null", "message must be a json object, got null"),
        ("true", "message must be a json object, got boolean"),
        ("{}", "missing field 'event'"),
        ('{"event": 3}', "field 'event' must be a string, got number"),
        ('{"event": {"a": 1}}', "field 'event' must be a string, got object"),
        ('{"event": "foo"}', "unknown event 'foo'"),
        ('{"event": "clear", "streamSid": "MZ1"}', "unknown event 'clear'"),
        ('{"event": "' + "x" * 100 + '"}', "unknown event '" + "x" * 40 + "…'"),
    ],
)
def test_rejects_malformed_frames(data: str | bytes, expected: str) -> None:
    """Oversized, non-UTF-8, non-JSON and non-object frames and unknown events are rejected."""
    assert _raises(data).message == expected


def test_the_size_limit_is_inclusive() -> None:
    """A frame of exactly MAX_MESSAGE_BYTES is parsed, not rejected for its size."""
    error = _raises(_padded(MAX_MESSAGE_BYTES))
    assert error.message == "missing field 'media' in 'media' message"


MEDIA_CASES = [
    (_without(_media(), "streamSid"), "missing field 'streamSid' in 'media' message"),
    (_without(_media(), "media"), "missing field 'media' in 'media' message"),
    (_without(_media(), "media", "payload"), "missing field 'media.payload' in 'media' message"),
    (_without(_media(), "media", "track"), "missing field 'media.track' in 'media' message"),
    (_without(_media(), "media", "chunk"), "missing field 'media.chunk' in 'media' message"),
    (
        _without(_media(), "media", "timestamp"),
        "missing field 'media.timestamp' in 'media' message",
    ),
    (
        {**_media(), "media": "abc"},
        "field 'media' in 'media' message must be an object, got string",
    ),
    (
        {**_media(), "streamSid": None},
        "field 'streamSid' in 'media' message must be a string, got null",
    ),
    (
        _media(timestamp="12a"),
        "field 'media.timestamp' in 'media' message must be a string of decimal digits, got '12a'",
    ),
    (
        _media(timestamp=12),
        "field 'media.timestamp' in 'media' message must be a string, got number",
    ),
    (
        _media(timestamp="-5"),
        "field 'media.timestamp' in 'media' message must be a string of decimal digits, got '-5'",
    ),
    (
        _media(chunk=""),
        "field 'media.chunk' in 'media' message must be a string of decimal digits, got ''",
    ),
    (
        _media(chunk="²"),
        "field 'media.chunk' in 'media' message must be a string of decimal digits, got '²'",
    ),
    (
        _media(chunk=" 1"),
        "field 'media.chunk' in 'media' message must be a string of decimal digits, got ' 1'",
    ),
    (
        _media(chunk="1" * 19),
        "field 'media.chunk' in 'media' message must be a string of decimal digits, "
        f"got '{'1' * 19}'",
    ),
    (
        {**_media(), "sequenceNumber": "1e3"},
        "field 'sequenceNumber' in 'media' message must be a string of decimal digits, got '1e3'",
    ),
    (
        {**_media(), "sequenceNumber": 2},
        "field 'sequenceNumber' in 'media' message must be a string, got number",
    ),
    (
        _media(track=["inbound"]),
        "field 'media.track' in 'media' message must be a string, got array",
    ),
    (_media(payload="!!!!"), "media payload is not valid base64"),
    (_media(payload="/w="), "media payload is not valid base64"),
    (_media(payload="/w==\n"), "media payload is not valid base64"),
    (_media(payload="éé=="), "media payload is not valid base64"),
    (_media(payload=255), "field 'media.payload' in 'media' message must be a string, got number"),
    (
        _media(payload=base64.b64encode(bytes(9000)).decode()),
        "media payload of 9000 bytes exceeds the limit of 8000",
    ),
]


@pytest.mark.parametrize(("message", "expected"), MEDIA_CASES)
def test_rejects_malformed_media(message: dict[str, Any], expected: str) -> None:
    """Missing fields, wrong types, bad numbers and bad payloads are named precisely."""
    error = _raises(json.dumps(message))
    assert error.message == expected
    assert error.event == "media"


START_CASES = [
    (_without(_start(), "start"), "missing field 'start' in 'start' message"),
    (
        _without(_start(), "start", "streamSid"),
        "missing field 'start.streamSid' in 'start' message",
    ),
    (
        _without(_start(), "start", "accountSid"),
        "missing field 'start.accountSid' in 'start' message",
    ),
    (_without(_start(), "start", "callSid"), "missing field 'start.callSid' in 'start' message"),
    (_without(_start(), "start", "tracks"), "missing field 'start.tracks' in 'start' message"),
    (
        _without(_start(), "start", "mediaFormat"),
        "missing field 'start.mediaFormat' in 'start' message",
    ),
    (
        _without(_start(), "start", "mediaFormat", "channels"),
        "missing field 'start.mediaFormat.channels' in 'start' message",
    ),
    (
        {**_start(), "streamSid": "MZother"},
        "field 'streamSid' in 'start' message does not match 'start.streamSid'",
    ),
    (
        _start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": "8000", "channels": 1}),
        "field 'start.mediaFormat.sampleRate' in 'start' message must be an integer, got string",
    ),
    (
        _start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000.0, "channels": 1}),
        "field 'start.mediaFormat.sampleRate' in 'start' message must be an integer, got number",
    ),
    (
        _start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": True}),
        "field 'start.mediaFormat.channels' in 'start' message must be an integer, got boolean",
    ),
    (
        _start(tracks="inbound"),
        "field 'start.tracks' in 'start' message must be an array of strings, got string",
    ),
    (
        _start(tracks=["inbound", 1]),
        "field 'start.tracks' in 'start' message must be an array of strings",
    ),
    (
        _start(customParameters=["a"]),
        "field 'start.customParameters' in 'start' message must be an object of strings, got array",
    ),
    (
        _start(customParameters={"phone": 15551234567}),
        "field 'start.customParameters' in 'start' message must map names to strings",
    ),
]


@pytest.mark.parametrize(("message", "expected"), START_CASES)
def test_rejects_malformed_start(message: dict[str, Any], expected: str) -> None:
    """Every documented start field is required with its type; parameters are strings."""
    error = _raises(json.dumps(message))
    assert error.message == expected
    assert error.event == "start"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"event": "connected", "version": "1.0.0"},
            "missing field 'protocol' in 'connected' message",
        ),
        (
            {"event": "connected", "protocol": "Call", "version": 1},
            "field 'version' in 'connected' message must be a string, got number",
        ),
        (
            {
                "event": "dtmf",
                "streamSid": STREAM,
                "dtmf": {"track": "inbound_track", "digit": "12"},
            },
            "field 'dtmf.digit' in 'dtmf' message must be one key of 0-9, *, #, A-D, "
            "got a string of length 2",
        ),
        (
            {
                "event": "dtmf",
                "streamSid": STREAM,
                "dtmf": {"track": "inbound_track", "digit": "x"},
            },
            "field 'dtmf.digit' in 'dtmf' message must be one key of 0-9, *, #, A-D, "
            "got a string of length 1",
        ),
        (
            {"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": "1"}},
            "missing field 'dtmf.track' in 'dtmf' message",
        ),
        (
            {"event": "mark", "streamSid": STREAM, "mark": {"name": 5}},
            "field 'mark.name' in 'mark' message must be a string, got number",
        ),
        ({"event": "mark", "streamSid": STREAM}, "missing field 'mark' in 'mark' message"),
        (
            {"event": "stop", "streamSid": STREAM, "stop": {"accountSid": ACCOUNT}},
            "missing field 'stop.callSid' in 'stop' message",
        ),
    ],
)
def test_rejects_malformed_connected_dtmf_mark_and_stop(
    message: dict[str, Any], expected: str
) -> None:
    """Errors name the dotted field and the event, and never quote a digit."""
    error = _raises(json.dumps(message))
    assert error.message == expected
    assert error.event == message["event"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"event": "start"}, "unknown event 'start'"),
        ({"event": "clear"}, "missing field 'streamSid' in 'clear' message"),
        (
            {"event": "mark", "streamSid": STREAM, "mark": {}},
            "missing field 'mark.name' in 'mark' message",
        ),
        (
            {"event": "media", "streamSid": STREAM, "media": {"payload": "%%"}},
            "media payload is not valid base64",
        ),
    ],
)
def test_rejects_malformed_outbound_messages(message: dict[str, Any], expected: str) -> None:
    """parse_outbound applies the same strictness to the server's messages."""
    assert _raises(json.dumps(message), parse_outbound).message == expected


def test_outbound_parsing_checks_frames_like_inbound_parsing() -> None:
    """Size, syntax and object checks are shared by both directions."""
    assert _raises(_padded(70_000), parse_outbound).message == (
        "message of 70000 bytes exceeds the limit of 65536"
    )
    assert _raises("[]", parse_outbound).message == "message must be a json object, got array"


def test_errors_never_quote_digits_or_custom_parameters() -> None:
    """Personal data in malformed messages does not reach the error message."""
    dtmf = {"event": "dtmf", "streamSid": STREAM, "dtmf": {"track": "t", "digit": "4111"}}
    assert "4111" not in _raises(json.dumps(dtmf)).message
    start = _start(customParameters={"phone": ["+15551234567"]})
    message = _raises(json.dumps(start)).message
    assert "5551234567" not in message
    assert "phone" not in message


def test_outbound_media_may_carry_seconds_of_audio() -> None:
    """Servers may send Twilio more than our inbound limit at once (Pipecat sends 2 s)."""
    payload = bytes(2 * MAX_PAYLOAD_BYTES)
    message = {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": base64.b64encode(payload).decode()},
    }
    parsed = parse_outbound(json.dumps(message))
    assert isinstance(parsed, OutboundMedia)
    assert parsed.payload == payload
