"""The ring buffer of recent inbound audio, read back in stream seconds."""

from __future__ import annotations

import re

import pytest

from voicerail.audio.ring import AudioRingBuffer


def _pcm(first_sample: int, num_samples: int) -> bytes:
    """Samples numbered from ``first_sample``, so positions can be checked."""
    return b"".join(
        (n % 32768).to_bytes(2, "little", signed=True)
        for n in range(first_sample, first_sample + num_samples)
    )


def test_since_reads_from_a_stream_time_to_the_end() -> None:
    """Times map to samples at the buffer's rate."""
    ring = AudioRingBuffer(max_s=1.0, sample_rate_hz=8000)
    ring.append(_pcm(0, 160))
    ring.append(_pcm(160, 160))
    assert ring.total_s == pytest.approx(0.04)
    assert ring.since(0.0) == _pcm(0, 320)
    assert ring.since(0.02) == _pcm(160, 160)
    assert ring.since(0.03) == _pcm(240, 80)


def test_times_round_to_the_nearest_sample() -> None:
    """0.0101 s at 8 kHz is sample 81 (80.8 rounded)."""
    ring = AudioRingBuffer(max_s=1.0, sample_rate_hz=8000)
    ring.append(_pcm(0, 160))
    assert ring.since(0.0101) == _pcm(81, 79)


def test_times_past_the_end_give_nothing() -> None:
    """At or after total_s there is no audio yet."""
    ring = AudioRingBuffer(max_s=1.0, sample_rate_hz=8000)
    ring.append(_pcm(0, 160))
    assert ring.since(0.02) == b""
    assert ring.since(5.0) == b""


def test_old_audio_is_dropped_past_max_s() -> None:
    """Only the last max_s seconds are kept; earlier times read from the oldest kept."""
    ring = AudioRingBuffer(max_s=0.05, sample_rate_hz=8000)  # 400 samples
    for n in range(0, 1600, 160):
        ring.append(_pcm(n, 160))
    assert ring.total_s == pytest.approx(0.2)
    assert ring.start_s == pytest.approx(0.15)
    assert ring.since(0.0) == _pcm(1200, 400)
    assert ring.since(0.19) == _pcm(1520, 80)


def test_since_before_stream_start_reads_everything() -> None:
    """Negative times (pre-roll before the call began) clamp to the start."""
    ring = AudioRingBuffer(max_s=1.0, sample_rate_hz=16000)
    ring.append(_pcm(0, 100))
    assert ring.start_s == 0.0
    assert ring.since(-0.3) == _pcm(0, 100)


def test_bad_input_is_rejected() -> None:
    """Odd-length PCM and non-positive settings raise ValueError."""
    with pytest.raises(ValueError, match="even number of bytes, got 3 bytes"):
        AudioRingBuffer(max_s=1.0, sample_rate_hz=8000).append(b"\x00\x00\x00")
    with pytest.raises(ValueError, match=re.escape("got 0.0 and 8000")):
        AudioRingBuffer(max_s=0.0, sample_rate_hz=8000)
    with pytest.raises(ValueError, match=re.escape("got 1.0 and 0")):
        AudioRingBuffer(max_s=1.0, sample_rate_hz=0)
