"""The pieces the JSON media-stream codecs share (voicerail.wire.stream_base)."""

from __future__ import annotations

import base64

import pytest

from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.stream_base import (
    QueuedStream,
    check_dtmf_digit,
    check_l16_frame,
    check_ulaw_payload,
)
from voicerail.wire.transport import CallAnswered, DigitPressed


def test_queues_are_taken_once_and_refs_follow_the_call() -> None:
    """Events and frames come out once, oldest first; refs are None until a call is set."""
    stream = QueuedStream()
    assert (stream.call_ref, stream.stream_ref) == (None, None)
    stream._call = CallAnswered(call_ref="CA1", stream_ref="MZ1")
    stream._events += [DigitPressed("1"), DigitPressed("2")]
    stream._outgoing += ["a", b"b"]
    assert (stream.call_ref, stream.stream_ref) == ("CA1", "MZ1")
    assert stream.events_received() == [DigitPressed("1"), DigitPressed("2")]
    assert stream.events_received() == []
    assert stream.data_to_send() == ["a", b"b"]
    assert stream.data_to_send() == []


def test_dtmf_digit_checked_without_naming_the_value() -> None:
    """A DTMF key passes; anything else names the field and event, never the digits."""
    assert check_dtmf_digit("#", "digit", "dtmf") == "#"
    with pytest.raises(ProtocolError) as raised:
        check_dtmf_digit("12", "dtmf.digit", "dtmf")
    assert str(raised.value) == "field 'dtmf.digit' in 'dtmf' message is not a dtmf key"
    assert "12" not in str(raised.value)


def test_ulaw_payload_is_base64_within_limits() -> None:
    """1 to the limit bytes come back as base64; empty or longer is our fault."""
    assert check_ulaw_payload(b"\xff\x7f", "media", 2) == base64.b64encode(b"\xff\x7f").decode()
    for bad in (b"", b"abc"):
        with pytest.raises(LocalProtocolError) as raised:
            check_ulaw_payload(bad, "playAudio", 2)
        assert str(raised.value) == f"playAudio payload of {len(bad)} bytes is outside 1 to 2"


def test_l16_frame_must_be_whole_samples_within_limit() -> None:
    """Odd lengths and frames over the limit are the peer's fault."""
    check_l16_frame(b"\x00\x00", 4)
    for bad in (b"\x00", b"\x00" * 6):
        with pytest.raises(ProtocolError, match=f"audio frame of {len(bad)} bytes"):
            check_l16_frame(bad, 4)
