"""Levels that decide where caller speech ends and when agent audio becomes audible."""

from __future__ import annotations

import numpy as np
import pytest

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.audio.levels import (
    AUDIBLE_DBFS,
    pcm16_level_dbfs,
    ulaw_is_audible,
    ulaw_speech_num_frames,
)


def _tone(dbfs: float, num_samples: int = 160) -> bytes:
    """A 440 Hz sine whose mean power is ``dbfs`` (a sine's power is amplitude**2 / 2)."""
    amplitude = 32768.0 * 10 ** (dbfs / 20) * np.sqrt(2.0)
    t = np.arange(num_samples) / 8000
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def test_a_full_scale_sine_reads_about_minus_3_dbfs() -> None:
    assert pcm16_level_dbfs(_tone(-3.01, 8000)) == pytest.approx(-3.01, abs=0.05)


def test_digital_silence_and_no_samples_read_the_floor() -> None:
    assert pcm16_level_dbfs(b"\x00\x00" * 160) == -120.0
    assert pcm16_level_dbfs(b"") == -120.0


def test_audibility_threshold_is_minus_45_dbfs_on_decoded_ulaw() -> None:
    assert AUDIBLE_DBFS == -45.0
    assert ulaw_is_audible(pcm16_to_ulaw(_tone(-40)))
    assert not ulaw_is_audible(pcm16_to_ulaw(_tone(-50)))
    assert not ulaw_is_audible(b"\xff" * 160)  # μ-law silence


def test_speech_ends_at_the_last_audible_frame_not_the_end_of_the_audio() -> None:
    speech = pcm16_to_ulaw(_tone(-20, 160 * 30))
    quiet_pause = pcm16_to_ulaw(_tone(-60, 160 * 5))  # below threshold, inside speech
    ulaw = speech + quiet_pause + speech[: 160 * 3] + b"\xff" * (160 * 40)
    assert ulaw_speech_num_frames(ulaw) == 30 + 5 + 3


def test_a_trailing_part_frame_counts_as_one_frame() -> None:
    ulaw = b"\xff" * 160 + pcm16_to_ulaw(_tone(-20, 80))
    assert ulaw_speech_num_frames(ulaw) == 2


def test_audio_without_an_audible_frame_has_no_speech() -> None:
    assert ulaw_speech_num_frames(b"\xff" * 1600) == 0
    assert ulaw_speech_num_frames(b"") == 0
