"""VonageSocketProtocol: connect message with headers, binary L16, notify and clear."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.transport import AudioReceived, CallAnswered, DigitPressed, PlaybackMarked
from voicerail.wire.vonage import VonageSocketProtocol


def connected(rate: int = 8000, **headers: str) -> str:
    return json.dumps(
        {"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}", **headers}
    )


def tone(num_samples: int) -> bytes:
    t = np.arange(num_samples)
    return (np.sin(t / 5) * 8000).astype("<i2").tobytes()


def test_connect_names_the_call_from_its_headers():
    proto = VonageSocketProtocol()
    proto.receive_data(connected(call_uuid="u-1", **{"from": "15550100"}, lang="en"))
    (answered,) = proto.events_received()
    assert isinstance(answered, CallAnswered)
    assert (answered.call_ref, answered.caller) == ("u-1", "15550100")
    assert answered.custom_parameters == {"from": "15550100", "lang": "en"}
    assert proto.sending and proto.sample_rate_hz == 8000


def test_binary_frames_at_8khz_are_the_call_audio_as_is():
    proto = VonageSocketProtocol()
    proto.receive_data(connected(call_uuid="u-1"))
    proto.receive_data(tone(160))
    proto.receive_data(json.dumps({"event": "websocket:dtmf", "digit": "7", "duration": 250}))
    assert proto.events_received()[1:] == [AudioReceived(tone(160)), DigitPressed("7")]


def test_16khz_audio_is_resampled_to_the_call_rate_both_ways():
    proto = VonageSocketProtocol()
    proto.receive_data(connected(16000, call_uuid="u-1"))
    proto.events_received()
    for _ in range(50):  # one second at 16 kHz: 32,000 bytes in
        proto.receive_data(tone(320))
    num_bytes = sum(len(e.pcm) for e in proto.events_received() if isinstance(e, AudioReceived))
    # 16,000 bytes at 8 kHz, less what the resampler still holds (under 0.1 s)
    assert 16_000 - 1_600 <= num_bytes <= 16_000
    proto.send_audio(pcm16_to_ulaw(tone(1600)))  # 200 ms at 8 kHz
    frames = proto.data_to_send()
    assert frames and all(isinstance(f, bytes) and len(f) == 640 for f in frames)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"\x00\x00"], "binary frame of 2 bytes before 'websocket:connected'"),
        ([json.dumps({"event": "websocket:dtmf", "digit": "1"})], "expected 'websocket:connected'"),
        ([connected(), connected()], "unexpected second 'websocket:connected'"),
        ([connected(44100)], "unsupported content-type 'audio/l16;rate=44100'"),
        ([connected(), b"\x00\x00\x00"], "audio frame of 3 bytes"),
        ([connected(), json.dumps({"event": "websocket:weird"})], "unknown event"),
        (
            [connected(), json.dumps({"event": "websocket:notify", "payload": {"mark": "x"}})],
            "notify 'x' was never sent",
        ),
    ],
)
def test_broken_rules_raise_protocol_errors_naming_them(frames, message):
    proto = VonageSocketProtocol()
    with pytest.raises(ProtocolError) as caught:
        for data in frames:
            proto.receive_data(data)
    assert message in caught.value.message


def test_marks_are_notify_actions_padded_to_whole_frames_and_clear_forgets_them():
    proto = VonageSocketProtocol()
    proto.receive_data(connected(call_uuid="u-1"))
    proto.send_audio(b"\xff" * 200)  # one 20 ms frame and 40 samples over
    proto.send_mark("r1.s0")
    proto.send_mark("r1.s1")
    frames = proto.data_to_send()
    assert [len(f) for f in frames[:2]] == [320, 320]
    assert json.loads(frames[2]) == {"action": "notify", "payload": {"mark": "r1.s0"}}
    proto.receive_data(json.dumps({"event": "websocket:notify", "payload": {"mark": "r1.s0"}}))
    assert proto.events_received()[-1] == PlaybackMarked("r1.s0")
    proto.send_clear()
    assert json.loads(proto.data_to_send()[-1]) == {"action": "clear"}
    proto.receive_data(json.dumps({"event": "websocket:cleared"}))
    with pytest.raises(ProtocolError):
        proto.receive_data(json.dumps({"event": "websocket:notify", "payload": {"mark": "r1.s1"}}))


def test_sending_before_connect_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="before 'websocket:connected'"):
        VonageSocketProtocol().send_clear()
