"""TwilioStreamProtocol: message order, stream checks, mark tracking and sending."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire import twilio
from voicerail.wire.twilio import (
    DTMF,
    MAX_PAYLOAD_BYTES,
    Clear,
    Connected,
    InboundMessage,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    StreamState,
    TwilioStreamProtocol,
    build_start,
    parse_outbound,
    serialize_inbound,
)

STREAM = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ACCOUNT = "AC" + "0" * 32
FRAME = b"\xff" * 160


def connected() -> str:
    return serialize_inbound(Connected("Call", "1.0.0"))


def start(seq: int | None = 1, **changes: object) -> str:
    message = build_start(STREAM, CALL, custom_parameters={"tenant": "acme"}, sequence_number=seq)
    fields = {
        "sequence_number": message.sequence_number,
        "stream_sid": message.stream_sid,
        "account_sid": message.account_sid,
        "call_sid": message.call_sid,
        "tracks": message.tracks,
        "custom_parameters": message.custom_parameters,
        "media_format": message.media_format,
    }
    fields.update(changes)
    return serialize_inbound(Start(**fields))  # type: ignore[arg-type]


def media(seq: int | None, chunk: int, *, track: str = "inbound", stream_sid: str = STREAM) -> str:
    return serialize_inbound(Media(seq, stream_sid, track, chunk, chunk * 20, FRAME))


def dtmf(seq: int | None, digit: str = "5") -> str:
    return serialize_inbound(DTMF(seq, STREAM, "inbound_track", digit))


def mark(seq: int | None, name: str) -> str:
    return serialize_inbound(Mark(seq, STREAM, name))


def stop(seq: int | None, call_sid: str = CALL) -> str:
    return serialize_inbound(Stop(seq, STREAM, ACCOUNT, call_sid))


def streaming(*frames: str) -> TwilioStreamProtocol:
    """A protocol that received connected, start and ``frames``, with events drained."""
    protocol = TwilioStreamProtocol()
    for frame in (connected(), start(), *frames):
        protocol.receive_data(frame)
    protocol.events_received()
    return protocol


def rejected(protocol: TwilioStreamProtocol, frame: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.receive_data(frame)
    return info.value


# -- a whole call --------------------------------------------------------------------


def test_a_realistic_call() -> None:
    """Connected, start, audio, a key press, agent audio with a mark and its echo, stop."""
    protocol = TwilioStreamProtocol()
    assert protocol.state is StreamState.AWAITING_START
    assert protocol.stream_sid is None
    assert protocol.call_sid is None
    assert protocol.start is None

    protocol.receive_data(connected())
    protocol.receive_data(start())
    events = protocol.events_received()
    assert [type(event) for event in events] == [Connected, Start]
    assert protocol.state is StreamState.STREAMING
    assert protocol.stream_sid == STREAM
    assert protocol.call_sid == CALL
    assert protocol.start == events[1]

    for n in range(1, 4):
        protocol.receive_data(media(n + 1, n))
    protocol.receive_data(dtmf(5).encode())
    received: list[InboundMessage] = protocol.events_received()
    assert [type(event) for event in received] == [Media, Media, Media, DTMF]
    assert [event.chunk for event in received if isinstance(event, Media)] == [1, 2, 3]
    assert protocol.events_received() == []

    protocol.send_media(FRAME)
    protocol.send_mark("reply-1")
    assert protocol.pending_marks == ("reply-1",)
    sent = [parse_outbound(text) for text in protocol.data_to_send()]
    assert sent == [OutboundMedia(STREAM, FRAME), OutboundMark(STREAM, "reply-1")]
    assert protocol.data_to_send() == []

    protocol.receive_data(mark(6, "reply-1"))
    assert protocol.pending_marks == ()
    protocol.receive_data(stop(7))
    assert [type(event) for event in protocol.events_received()] == [Mark, Stop]
    assert protocol.state is StreamState.STOPPED
    assert protocol.stream_sid == STREAM


def test_connected_is_optional() -> None:
    """A stream may begin directly with start."""
    protocol = TwilioStreamProtocol()
    protocol.receive_data(start())
    assert protocol.state is StreamState.STREAMING


def test_the_twilio_module_re_exports_the_codec() -> None:
    """``from voicerail.wire import twilio`` gives the messages and the codec."""
    assert twilio.parse_inbound(connected()) == Connected("Call", "1.0.0")
    assert twilio.MediaFormat is MediaFormat
    assert twilio.OutboundMedia is OutboundMedia


# -- order ---------------------------------------------------------------------------


def test_connected_is_allowed_only_first() -> None:
    """A second connected, or one after start, is rejected."""
    protocol = TwilioStreamProtocol()
    protocol.receive_data(connected())
    assert rejected(protocol, connected()).message == (
        "'connected' is only allowed as the first message"
    )
    protocol = streaming()
    error = rejected(protocol, connected())
    assert error.message == "'connected' is only allowed as the first message"
    assert error.event == "connected"


@pytest.mark.parametrize(
    ("frame", "event"),
    [(media(2, 1), "media"), (dtmf(2), "dtmf"), (mark(2, "m"), "mark"), (stop(2), "stop")],
)
def test_nothing_but_start_before_start(frame: str, event: str) -> None:
    """Media, DTMF, marks and stop before start are rejected."""
    protocol = TwilioStreamProtocol()
    protocol.receive_data(connected())
    error = rejected(protocol, frame)
    assert error.message == f"expected 'start' event, got '{event}'"
    assert error.event == event


def test_start_comes_only_once() -> None:
    """A second start is rejected."""
    assert rejected(streaming(), start(2)).message == "unexpected second 'start' event"


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        (media(9, 9), "media"),
        (dtmf(9), "dtmf"),
        (mark(9, "m"), "mark"),
        (stop(9), "stop"),
        (start(9), "start"),
    ],
)
def test_nothing_after_stop(frame: str, event: str) -> None:
    """Every message after stop is rejected."""
    protocol = streaming(stop(2))
    assert rejected(protocol, frame).message == f"unexpected '{event}' event after 'stop'"


# -- stream checks -------------------------------------------------------------------


def test_stream_sid_must_match_start() -> None:
    """A message for another stream is rejected, with both SIDs in the message."""
    error = rejected(streaming(), media(2, 1, stream_sid="MZother"))
    assert error.message == (
        f"streamSid 'MZother' in 'media' message does not match the stream's '{STREAM}'"
    )


@pytest.mark.parametrize("seq", [1, 3])
def test_sequence_numbers_strictly_increase(seq: int) -> None:
    """A sequence number equal to or below the previous one is rejected."""
    protocol = streaming(media(2, 1), media(3, 2))
    assert rejected(protocol, dtmf(seq)).message == (
        f"sequenceNumber {seq} in 'dtmf' message is not greater than the previous 3"
    )


def test_sequence_numbers_may_skip_and_be_absent() -> None:
    """Gaps and messages without a sequence number are accepted."""
    protocol = streaming(media(5, 1), media(None, 2), media(9, 3))
    assert rejected(protocol, media(8, 4)).message == (
        "sequenceNumber 8 in 'media' message is not greater than the previous 9"
    )


def test_media_chunks_strictly_increase_per_track() -> None:
    """Chunk numbers increase on each track independently."""
    both = ("inbound", "outbound")
    protocol = TwilioStreamProtocol()
    protocol.receive_data(start(tracks=both))
    protocol.receive_data(media(2, 1))
    protocol.receive_data(media(3, 1, track="outbound"))
    protocol.receive_data(media(4, 2))
    error = rejected(protocol, media(5, 2, track="inbound"))
    assert error.message == "media chunk 2 on track 'inbound' is not greater than the previous 2"
    assert error.event == "media"
    protocol.receive_data(media(5, 2, track="outbound"))


def test_media_must_be_on_an_announced_track() -> None:
    """Media on a track start did not list is rejected."""
    error = rejected(streaming(), media(2, 1, track="outbound"))
    assert (
        error.message
        == "media on track 'outbound', which 'start' did not announce (tracks: 'inbound')"
    )


@pytest.mark.parametrize(
    ("media_format", "expected"),
    [
        (
            MediaFormat("audio/x-l16", 16000, 1),
            "unsupported media format 'audio/x-l16' at 16000 hz with 1 channel(s); "
            "expected 'audio/x-mulaw' at 8000 hz mono",
        ),
        (
            MediaFormat("audio/x-mulaw", 8000, 2),
            "unsupported media format 'audio/x-mulaw' at 8000 hz with 2 channel(s); "
            "expected 'audio/x-mulaw' at 8000 hz mono",
        ),
    ],
)
def test_start_must_announce_mulaw_8000_mono(media_format: MediaFormat, expected: str) -> None:
    """Formats the audio pipeline cannot decode are rejected at start."""
    protocol = TwilioStreamProtocol()
    error = rejected(protocol, start(media_format=media_format))
    assert error.message == expected
    assert error.event == "start"
    assert protocol.state is StreamState.AWAITING_START


def test_stop_must_name_the_started_call() -> None:
    """A stop for another call is rejected without quoting either call SID."""
    error = rejected(streaming(), stop(2, call_sid="CA" + "9" * 32))
    assert error.message == "'stop' names a different call than 'start'"
    assert CALL not in error.message


# -- marks and clear -----------------------------------------------------------------


def test_a_mark_never_sent_is_rejected() -> None:
    """Twilio can only echo marks we sent."""
    error = rejected(streaming(), mark(2, "ghost"))
    assert error.message == "mark 'ghost' was never sent or was already echoed"
    assert error.event == "mark"


def test_peer_strings_in_errors_are_truncated() -> None:
    """A long name from the peer is cut at 40 characters in the error message."""
    error = rejected(streaming(), mark(2, "n" * 1000))
    assert error.message == f"mark '{'n' * 40}…' was never sent or was already echoed"


def test_a_mark_echoed_twice_is_rejected() -> None:
    """Each sent mark is echoed once."""
    protocol = streaming()
    protocol.send_mark("m1")
    protocol.receive_data(mark(2, "m1"))
    assert rejected(protocol, mark(3, "m1")).message == (
        "mark 'm1' was never sent or was already echoed"
    )


def test_marks_with_repeated_names_are_tracked_one_by_one() -> None:
    """A name sent twice stays pending until echoed twice; echo order is free."""
    protocol = streaming()
    for name in ("a", "b", "a"):
        protocol.send_mark(name)
    assert protocol.pending_marks == ("a", "b", "a")
    protocol.receive_data(mark(2, "b"))
    assert protocol.pending_marks == ("a", "a")
    protocol.receive_data(mark(3, "a"))
    assert protocol.pending_marks == ("a",)
    protocol.receive_data(mark(4, "a"))
    assert protocol.pending_marks == ()


def test_clear_keeps_marks_pending_until_twilio_echoes_them() -> None:
    """After clear, Twilio echoes the pending marks; until then they stay pending."""
    protocol = streaming()
    protocol.send_media(FRAME)
    protocol.send_mark("s1")
    protocol.send_media(FRAME)
    protocol.send_mark("s2")
    protocol.send_clear()
    assert parse_outbound(protocol.data_to_send()[-1]) == Clear(STREAM)
    assert protocol.pending_marks == ("s1", "s2")
    protocol.receive_data(mark(2, "s1"))
    protocol.receive_data(mark(3, "s2"))
    assert protocol.pending_marks == ()
    assert [event.name for event in protocol.events_received() if isinstance(event, Mark)] == [
        "s1",
        "s2",
    ]


# -- sending -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "event"),
    [
        (lambda p: p.send_media(FRAME), "media"),
        (lambda p: p.send_mark("m"), "mark"),
        (lambda p: p.send_clear(), "clear"),
    ],
)
def test_nothing_is_sent_outside_the_stream(
    send: Callable[[TwilioStreamProtocol], None], event: str
) -> None:
    """Sending before start or after stop is our bug: LocalProtocolError, nothing queued."""
    protocol = TwilioStreamProtocol()
    with pytest.raises(LocalProtocolError) as info:
        send(protocol)
    assert info.value.message == f"cannot send '{event}' before 'start'"
    assert info.value.event == event
    protocol = streaming(stop(2))
    with pytest.raises(LocalProtocolError) as info:
        send(protocol)
    assert info.value.message == f"cannot send '{event}' after 'stop'"
    assert protocol.data_to_send() == []
    assert protocol.pending_marks == ()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "cannot send an empty media payload"),
        (
            bytes(MAX_PAYLOAD_BYTES + 1),
            f"media payload of {MAX_PAYLOAD_BYTES + 1} bytes exceeds the limit of "
            f"{MAX_PAYLOAD_BYTES}",
        ),
    ],
)
def test_invalid_payloads_are_not_sent(payload: bytes, expected: str) -> None:
    """Empty and oversized payloads raise LocalProtocolError and queue nothing."""
    protocol = streaming()
    with pytest.raises(LocalProtocolError) as info:
        protocol.send_media(payload)
    assert info.value.message == expected
    assert protocol.data_to_send() == []


def test_a_payload_at_the_limit_is_sent() -> None:
    """A payload of exactly MAX_PAYLOAD_BYTES is sent and parses back."""
    protocol = streaming()
    protocol.send_media(bytes(MAX_PAYLOAD_BYTES))
    [text] = protocol.data_to_send()
    assert parse_outbound(text) == OutboundMedia(STREAM, bytes(MAX_PAYLOAD_BYTES))


def test_an_empty_mark_name_is_not_sent() -> None:
    """An empty mark name raises LocalProtocolError and is not tracked."""
    protocol = streaming()
    with pytest.raises(LocalProtocolError) as info:
        protocol.send_mark("")
    assert info.value.message == "cannot send a mark with an empty name"
    assert protocol.pending_marks == ()
    assert protocol.data_to_send() == []


def test_local_and_remote_errors_are_distinct() -> None:
    """Whose fault it is shows in the type: neither error is the other."""
    assert not issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(ProtocolError, LocalProtocolError)


# -- errors leave the object usable --------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        media(2, 1, stream_sid="MZother"),
        media(1, 5),
        media(3, 1),
        mark(3, "ghost"),
        stop(3, call_sid="CAother"),
        start(3),
        connected(),
    ],
)
def test_a_rejected_message_changes_nothing(frame: str) -> None:
    """After a ProtocolError the state, SIDs, marks and queues are as before."""
    protocol = streaming(media(2, 2))
    protocol.send_mark("pending")
    protocol.receive_data(dtmf(None))
    before = (protocol.state, protocol.stream_sid, protocol.call_sid, protocol.pending_marks)
    with pytest.raises(ProtocolError):
        protocol.receive_data(frame)
    assert (
        protocol.state,
        protocol.stream_sid,
        protocol.call_sid,
        protocol.pending_marks,
    ) == before
    assert [type(event) for event in protocol.events_received()] == [DTMF]
    assert len(protocol.data_to_send()) == 1
    protocol.receive_data(media(3, 3))  # sequence and chunk counters did not move
    protocol.receive_data(mark(4, "pending"))
    protocol.receive_data(stop(5))
    assert protocol.state is StreamState.STOPPED


def test_a_rejected_start_leaves_the_stream_waiting() -> None:
    """A malformed start is rejected and a later valid start is accepted."""
    protocol = TwilioStreamProtocol()
    with pytest.raises(ProtocolError):
        protocol.receive_data(start(media_format=MediaFormat("audio/x-mulaw", 16000, 1)))
    assert protocol.state is StreamState.AWAITING_START
    assert protocol.stream_sid is None
    assert protocol.events_received() == []
    protocol.receive_data(start())
    assert protocol.state is StreamState.STREAMING
