"""TelnyxStreamProtocol: order rules, formats, marks; a rejected frame changes nothing."""

from __future__ import annotations

import base64
import json

import pytest

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.telnyx import TelnyxState, TelnyxStreamProtocol
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
)

STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
ULAW = bytes(range(160))


def frame(event: str, **body: object) -> str:
    return json.dumps({"event": event, "stream_id": STREAM_ID, **body})


def start(encoding: str = "PCMU", rate: int = 8000) -> str:
    return frame(
        "start",
        start={
            "call_control_id": "v3:abc",
            "from": "+15550100",
            "custom_parameters": {"k": "v"},
            "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1},
        },
    )


def media(payload: bytes = ULAW, track: str = "inbound") -> str:
    b64 = base64.b64encode(payload).decode()
    return frame("media", media={"track": track, "chunk": "1", "timestamp": "0", "payload": b64})


def started() -> TelnyxStreamProtocol:
    proto = TelnyxStreamProtocol()
    proto.receive_data(json.dumps({"event": "connected", "version": "1.0.0"}))
    proto.receive_data(start())
    proto.events_received()
    return proto


def test_a_call_flows_from_start_to_stop_as_transport_events():
    proto = started()
    proto.receive_data(media())
    proto.receive_data(frame("dtmf", dtmf={"digit": "5"}))
    proto.receive_data(frame("stop", stop={"call_control_id": "v3:abc"}))
    events = proto.events_received()
    assert events == [AudioReceived(ulaw_to_pcm16(ULAW)), DigitPressed("5"), CallHungUp()]
    assert proto.state is TelnyxState.STOPPED and not proto.sending


def test_start_names_the_call_and_the_caller():
    proto = TelnyxStreamProtocol()
    proto.receive_data(start())
    (answered,) = proto.events_received()
    assert isinstance(answered, CallAnswered)
    assert (answered.call_ref, answered.stream_ref, answered.caller) == (
        "v3:abc",
        STREAM_ID,
        "+15550100",
    )
    assert answered.custom_parameters == {"k": "v"}


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([media()], "expected 'start' event, got 'media'"),
        ([start(), start()], "unexpected second 'start' event"),
        ([start(), frame("stop"), media()], "unexpected 'media' event after 'stop'"),
        (
            [start(), json.dumps({"event": "connected"})],
            "'connected' is only allowed as the first frame",
        ),
        ([frame("hello")], "unknown event 'hello'"),
        ([start("PCMA")], "unsupported media format 'PCMA' at 8000 hz"),
        ([start("PCMU", 16000)], "unsupported media format 'PCMU' at 16000 hz"),
        ([start(), frame("mark", mark={"name": "m1"})], "mark 'm1' was never sent"),
        ([start(), frame("dtmf", dtmf={"digit": "55"})], "is not a dtmf key"),
        ([start(), media(track="sideways")], "must be 'inbound' or 'outbound'"),
        ([b"\x00\x01"], "binary frame of 2 bytes"),
        (["{not json"], "message is not valid json"),
    ],
)
def test_broken_rules_raise_protocol_errors_naming_them(frames, message):
    proto = TelnyxStreamProtocol()
    with pytest.raises(ProtocolError) as caught:
        for data in frames:
            proto.receive_data(data)
    assert message in caught.value.message


def test_another_streams_frame_is_refused_and_changes_nothing():
    proto = started()
    other = json.dumps({"event": "stop", "stream_id": "other"})
    with pytest.raises(ProtocolError, match="does not match"):
        proto.receive_data(other)
    assert proto.state is TelnyxState.STREAMING and proto.events_received() == []


def test_outbound_track_media_and_error_frames_are_not_call_audio():
    proto = started()
    proto.receive_data(media(track="outbound"))
    proto.receive_data(json.dumps({"event": "error", "payload": {"code": 100002}}))
    assert proto.events_received() == [] and proto.errors_received == 1


def test_marks_are_echoed_once_and_sends_serialize_as_telnyx_frames():
    proto = started()
    proto.send_audio(ULAW)
    proto.send_mark("r1.s0")
    proto.send_clear()
    sent = [json.loads(f) for f in proto.data_to_send()]
    assert sent == [
        {"event": "media", "media": {"payload": base64.b64encode(ULAW).decode()}},
        {"event": "mark", "mark": {"name": "r1.s0"}},
        {"event": "clear"},
    ]
    proto.receive_data(frame("mark", mark={"name": "r1.s0"}))
    assert proto.events_received() == [PlaybackMarked("r1.s0")]
    with pytest.raises(ProtocolError, match="already echoed"):
        proto.receive_data(frame("mark", mark={"name": "r1.s0"}))


def test_sending_outside_the_stream_is_a_local_error():
    proto = TelnyxStreamProtocol()
    with pytest.raises(LocalProtocolError, match="before 'start'"):
        proto.send_audio(ULAW)
    proto = started()
    with pytest.raises(LocalProtocolError, match="outside 1 to"):
        proto.send_audio(b"")
