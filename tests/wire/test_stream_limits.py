"""The media stream's deadlines and real-time rule, as numbers in and errors out."""

from __future__ import annotations

import pytest

from voicerail.errors import ProtocolError, StreamLimitExceeded
from voicerail.wire.stream_limits import StreamGuard, StreamLimits

FRAME = 160  # 20 ms of μ-law at 8 kHz
LIMITS = StreamLimits(start_deadline_s=10.0, media_silence_s=5.0, media_burst_s=2.0)


def test_no_start_within_the_deadline_expires_the_stream():
    guard = StreamGuard(LIMITS, accepted_s=100.0)
    assert guard.expired(110.0) is None
    error = guard.expired(110.5)
    assert isinstance(error, StreamLimitExceeded) and isinstance(error, ProtocolError)
    assert error.limit == "start_deadline"
    assert error.message == "no 'start' within 10.0 s of connecting (waited 10.5 s)"


def test_start_then_no_media_expires_after_the_silence_limit():
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(1.0)
    assert guard.expired(6.0) is None
    error = guard.expired(6.5)
    assert error is not None and error.limit == "media_silence"
    assert error.message == "no media for 5.5 s (limit 5.0 s)"


def test_media_every_20_ms_keeps_the_stream_alive_for_a_long_call():
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.5)
    for k in range(30_000):  # ten minutes
        now = 0.5 + k * 0.02
        guard.receive_media(FRAME, now)
        assert guard.expired(now + 0.01) is None
    assert guard.audio_s == pytest.approx(600.0)


def test_a_gap_after_media_expires_from_the_last_media():
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.0)
    guard.receive_media(FRAME, 20.0)  # 20 s > 5 s, but checked only on ticks
    assert guard.expired(24.9) is None
    error = guard.expired(25.1)
    assert error is not None and error.limit == "media_silence"


def test_no_deadline_applies_after_stop():
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.0)
    guard.receive_stop()
    assert guard.expired(1000.0) is None


def test_media_faster_than_real_time_beyond_the_burst_is_refused():
    """Issue 11: 92,300 media messages in 10 s were all accepted."""
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.0)
    for _ in range(100):  # 2.0 s of audio at one instant: exactly the tolerance
        guard.receive_media(FRAME, 1.0)
    with pytest.raises(StreamLimitExceeded) as caught:
        guard.receive_media(FRAME, 1.0)
    assert caught.value.limit == "media_rate"
    assert caught.value.message == (
        "inbound media faster than real time: 2.02 s of audio in 0.00 s, 2.02 s ahead (limit 2.0 s)"
    )


def test_a_late_burst_after_a_network_stall_is_not_ahead_of_real_time():
    """Audio held up by the network and delivered at once only catches up."""
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.0)
    guard.receive_media(FRAME, 0.0)
    for _ in range(150):  # 3 s of audio, all arriving 3 s later
        guard.receive_media(FRAME, 3.0)
    assert guard.audio_s == pytest.approx(3.02)


def test_a_start_that_came_late_then_caught_up_is_within_the_tolerance():
    """The first 1.5 s of audio arrive together, then one frame every 20 ms."""
    guard = StreamGuard(LIMITS, accepted_s=0.0)
    guard.receive_start(0.0)
    for _ in range(76):
        guard.receive_media(FRAME, 1.5)
    for k in range(1, 425):
        guard.receive_media(FRAME, 1.5 + k * 0.02)
    assert guard.audio_s == pytest.approx(10.0)
