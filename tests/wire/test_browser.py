"""BrowserCallProtocol: start with the page's rate, PCM16 both ways through soxr,
marks played by the page, clear and cleared, dtmf, hangup, and the transcript."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.events.model import Event, EventKind
from voicerail.wire.browser import MAX_FRAME_BYTES, BrowserCallProtocol
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
)


def msg(event: str, **fields: object) -> str:
    return json.dumps({"event": event, **fields})


def tone(num_samples: int, rate_hz: int) -> bytes:
    t = np.arange(num_samples) / rate_hz
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def started(rate_hz: int = 48000) -> BrowserCallProtocol:
    proto = BrowserCallProtocol("web_1")
    proto.receive_data(msg("start", sampleRateHz=rate_hz))
    proto.events_received()
    proto.data_to_send()
    return proto


def test_start_answers_the_call_with_the_servers_id_and_tells_the_page():
    proto = BrowserCallProtocol("web_1")
    assert not proto.sending
    proto.receive_data(msg("start", sampleRateHz=48000))
    (answered,) = proto.events_received()
    assert isinstance(answered, CallAnswered)
    assert (answered.call_ref, answered.stream_ref, answered.sample_rate_hz) == (
        "web_1",
        "web_1",
        48000,
    )
    assert proto.sending and proto.call_ref == "web_1"
    assert proto.data_to_send() == [
        msg("started", callRef="web_1", sampleRateHz=48000),
    ]


def test_microphone_audio_at_48khz_becomes_8khz_call_audio():
    proto = started(48000)
    for _ in range(50):  # one second in 20 ms blocks
        proto.receive_data(tone(960, 48000))
    pcm = b"".join(e.pcm for e in proto.events_received() if isinstance(e, AudioReceived))
    # soxr holds back its filter delay (about 35 ms at medium quality).
    assert 7600 <= len(pcm) // 2 <= 8000


def test_audio_at_8khz_is_passed_through():
    proto = started(8000)
    proto.receive_data(tone(160, 8000))
    assert proto.events_received() == [AudioReceived(tone(160, 8000))]


def test_agent_audio_is_resampled_to_the_pages_rate_and_a_mark_flushes_its_tail():
    proto = started(48000)
    proto.send_audio(pcm16_to_ulaw(tone(1600, 8000)))  # 0.2 s
    proto.send_mark("r1.s0")
    frames = proto.data_to_send()
    assert frames[-1] == msg("mark", name="r1.s0")
    audio = b"".join(f for f in frames if isinstance(f, bytes))
    assert len(audio) // 2 == pytest.approx(9600, abs=2)  # 0.2 s at 48 kHz, whole


def test_played_echoes_a_sent_mark_once():
    proto = started()
    proto.send_mark("r1.s0")
    proto.receive_data(msg("played", mark="r1.s0"))
    assert proto.events_received() == [PlaybackMarked("r1.s0")]
    with pytest.raises(
        ProtocolError, match=re.escape("mark 'r1.s0' was never sent or was already played")
    ):
        proto.receive_data(msg("played", mark="r1.s0"))


def test_a_mark_dropped_by_clear_may_come_back_once_and_is_ignored():
    proto = started()
    proto.send_mark("r1.s0")
    proto.send_mark("r1.s1")
    proto.send_clear()
    assert proto.data_to_send()[-1] == msg("clear")
    proto.receive_data(msg("played", mark="r1.s0"))
    assert proto.events_received() == []
    proto.receive_data(msg("cleared"))
    with pytest.raises(ProtocolError, match=re.escape("mark 'r1.s1' was never sent")):
        proto.receive_data(msg("played", mark="r1.s1"))


def test_dtmf_and_hangup():
    proto = started()
    proto.receive_data(msg("dtmf", digit="5"))
    proto.receive_data(msg("hangup"))
    assert proto.events_received() == [DigitPressed("5"), CallHungUp()]
    assert not proto.sending
    with pytest.raises(LocalProtocolError, match="cannot send 'audio' after 'hangup'"):
        proto.send_audio(b"\xff" * 160)


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([msg("played", mark="x")], "expected 'start' event, got 'played'"),
        ([b"\x00\x00"], "binary frame of 2 bytes before 'start'"),
        ([msg("start", sampleRateHz=4000)], "must be 8000 to 96000, got 4000"),
        ([msg("start", sampleRateHz="48000")], "'sampleRateHz' in 'start' message must be an"),
        ([msg("start")], "missing field 'sampleRateHz' in 'start' message"),
        ([msg("start", sampleRateHz=8000)] * 2, "unexpected second 'start' event"),
        ([msg("start", sampleRateHz=8000), b"\x00"], "audio frame of 1 bytes is not whole"),
        (
            [msg("start", sampleRateHz=8000), b"\x00" * (MAX_FRAME_BYTES + 2)],
            f"audio frame of {MAX_FRAME_BYTES + 2} bytes",
        ),
        ([msg("start", sampleRateHz=8000), msg("dtmf", digit="55")], "is not a dtmf key"),
        ([msg("start", sampleRateHz=8000), msg("media")], "unknown event 'media'"),
        (
            [msg("start", sampleRateHz=8000), msg("hangup"), msg("dtmf", digit="1")],
            "unexpected 'dtmf' event after 'hangup'",
        ),
        (
            [msg("start", sampleRateHz=8000), msg("hangup"), b"\x00\x00"],
            "binary frame of 2 bytes after 'hangup'",
        ),
        (["[1]"], "message must be a json object, got array"),
    ],
)
def test_malformed_or_out_of_order_frames_are_refused_precisely(frames, error):
    proto = BrowserCallProtocol("web_1")
    *before, last = frames
    for frame in before:
        proto.receive_data(frame)
    queued = proto.events_received()
    with pytest.raises(ProtocolError, match=re.escape(error)):
        proto.receive_data(last)
    assert proto.events_received() == []  # a rejected frame changes nothing
    assert queued is not None


def test_nothing_is_sent_before_start():
    proto = BrowserCallProtocol("web_1")
    with pytest.raises(LocalProtocolError, match="cannot send 'mark' before 'start'"):
        proto.send_mark("m")
    with pytest.raises(LocalProtocolError, match="cannot send 'clear' before 'start'"):
        proto.send_clear()
    proto.observe_event(event(EventKind.TRANSCRIPT_FINAL, text="hello"))
    assert proto.data_to_send() == []


def test_empty_audio_and_marks_are_local_errors():
    proto = started()
    with pytest.raises(LocalProtocolError, match="cannot send empty audio"):
        proto.send_audio(b"")
    with pytest.raises(LocalProtocolError, match="cannot send a mark with an empty name"):
        proto.send_mark("")


def event(kind: EventKind, **pii: object) -> Event:
    return Event(call_id="vr_1", kind=kind, at_wall=0.0, at_mono=0.0, pii=dict(pii))


def test_the_transcript_shows_caller_and_agent_turns_as_recorded():
    proto = started()
    proto.observe_event(event(EventKind.TRANSCRIPT_FINAL, text="book [redacted:name]"))
    proto.observe_event(event(EventKind.DIALOG_DECIDED, agent_text="Which day?"))
    proto.observe_event(event(EventKind.CALL_STARTED))
    proto.observe_event(event(EventKind.TRANSCRIPT_FINAL, text=""))
    assert proto.data_to_send() == [
        msg("transcript", role="caller", text="book [redacted:name]"),
        msg("transcript", role="agent", text="Which day?"),
    ]


def test_an_empty_call_ref_is_refused():
    with pytest.raises(ValueError, match="call_ref must not be empty"):
        BrowserCallProtocol("")
