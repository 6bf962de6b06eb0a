"""PlivoStreamProtocol: start first, checkpoints, clearAudio, sequence numbers."""

from __future__ import annotations

import base64
import json

import pytest

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.plivo import PlivoStreamProtocol, parse_extra_headers
from voicerail.wire.transport import AudioReceived, CallAnswered, DigitPressed, PlaybackMarked

STREAM_ID = "20170ada-f610-433b-8758-c02a2aab3662"
ULAW = bytes(range(160))


def frame(event: str, seq: int, **body: object) -> str:
    return json.dumps({"event": event, "sequenceNumber": seq, "streamId": STREAM_ID, **body})


def start(encoding: str = "audio/x-mulaw", seq: int = 1) -> str:
    body = {
        "callId": "call-1",
        "streamId": STREAM_ID,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": encoding, "sampleRate": 8000},
    }
    return frame("start", seq, start=body, extra_headers="from=15550100;x=1")


def media(seq: int) -> str:
    payload = base64.b64encode(ULAW).decode()
    return frame("media", seq, media={"track": "inbound", "chunk": seq, "payload": payload})


def started() -> PlivoStreamProtocol:
    proto = PlivoStreamProtocol()
    proto.receive_data(start())
    proto.events_received()
    return proto


def test_start_then_media_and_dtmf_become_transport_events():
    proto = PlivoStreamProtocol()
    proto.receive_data(start())
    proto.receive_data(media(2))
    proto.receive_data(frame("dtmf", 3, dtmf={"digit": "#"}))
    answered, audio, digit = proto.events_received()
    assert isinstance(answered, CallAnswered) and answered.call_ref == "call-1"
    assert answered.caller == "15550100"
    assert audio == AudioReceived(ulaw_to_pcm16(ULAW)) and digit == DigitPressed("#")


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([media(1)], "expected 'start' event, got 'media'"),
        ([start(), start(seq=2)], "unexpected second 'start' event"),
        ([start(), media(3), media(2)], "sequenceNumber 2 in 'media' message is not greater"),
        ([start("audio/x-l16")], "unsupported media format 'audio/x-l16'"),
        ([start(), frame("stop", 2)], "unknown event 'stop'"),
        ([start(), frame("playedStream", 2, name="x")], "checkpoint 'x' was never sent"),
        ([start(), json.dumps({"event": "media", "streamId": "other"})], "does not match"),
    ],
)
def test_broken_rules_raise_protocol_errors_naming_them(frames, message):
    proto = PlivoStreamProtocol()
    with pytest.raises(ProtocolError) as caught:
        for data in frames:
            proto.receive_data(data)
    assert message in caught.value.message


def test_checkpoints_are_played_once_and_cleared_audio_forgets_them():
    proto = started()
    proto.send_audio(ULAW)
    proto.send_mark("r1.s0")
    proto.send_mark("r1.s1")
    proto.send_clear()
    sent = [json.loads(f) for f in proto.data_to_send()]
    assert [m["event"] for m in sent] == ["playAudio", "checkpoint", "checkpoint", "clearAudio"]
    assert sent[0]["media"]["contentType"] == "audio/x-mulaw"
    assert sent[1] == {"event": "checkpoint", "streamId": STREAM_ID, "name": "r1.s0"}
    proto.receive_data(frame("playedStream", 2, name="r1.s0"))
    assert proto.events_received() == [PlaybackMarked("r1.s0")]
    proto.receive_data(frame("clearedAudio", 3))
    assert proto.pending_checkpoints == ()
    with pytest.raises(ProtocolError, match="never sent or was already played"):
        proto.receive_data(frame("playedStream", 4, name="r1.s1"))


def test_a_rejected_frame_changes_nothing():
    proto = started()
    proto.receive_data(media(5))
    with pytest.raises(ProtocolError):
        proto.receive_data(media(5))
    proto.receive_data(media(6))  # the rejected 5 did not move the sequence


def test_sending_before_start_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="before 'start'"):
        PlivoStreamProtocol().send_mark("m")


def test_extra_headers_parse_both_separators():
    assert parse_extra_headers("a=1;b=2,c=3") == {"a": "1", "b": "2", "c": "3"}
