"""The simulated caller plays agent audio by bytes, as Twilio does, whatever the message size."""

from __future__ import annotations

from voicerail.sim.caller import FRAME_NUM_BYTES, SimulatedTwilioCall


def test_payloads_that_are_not_whole_frames_play_as_continuous_audio() -> None:
    caller = SimulatedTwilioCall("ws://127.0.0.1:9/twilio/media")
    for _ in range(3):
        caller._on_agent_media(b"\x00" * 240)  # 30 ms each: 720 bytes = 4.5 frames
    frames = [item for item in caller._playback if isinstance(item, bytes)]
    assert [len(f) for f in frames] == [FRAME_NUM_BYTES] * 4
    caller._flush_partial()  # a mark follows: the last half frame plays, padded
    frames = [item for item in caller._playback if isinstance(item, bytes)]
    assert [len(f) for f in frames] == [FRAME_NUM_BYTES] * 5
    assert b"".join(frames)[:720] == b"\x00" * 720
    assert b"".join(frames)[720:] == b"\xff" * 80


def test_a_100_ms_message_is_not_an_arrival_gap_when_the_next_comes_100_ms_later() -> None:
    caller = SimulatedTwilioCall("ws://127.0.0.1:9/twilio/media")
    for k in range(20):
        caller._track_arrival(10.0 + k * 0.1, num_frames=5)
    assert caller.result.arrival_gaps_s == []
    caller._track_arrival(10.0 + 19 * 0.1 + 0.15, num_frames=5)  # 50 ms late
    assert len(caller.result.arrival_gaps_s) == 1
