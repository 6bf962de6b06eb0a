"""Fixed-size framing and μ-law silence."""

from __future__ import annotations

import re

import pytest

from voicerail.audio.frames import split_frames, ulaw_silence
from voicerail.audio.g711 import ULAW_FRAME_NUM_BYTES


def test_exact_multiple_is_split_without_padding() -> None:
    """Two whole frames come out unchanged."""
    data = bytes(range(160)) + bytes(range(160))
    assert split_frames(data, ULAW_FRAME_NUM_BYTES) == [bytes(range(160))] * 2


def test_last_frame_is_padded_with_ulaw_silence_by_default() -> None:
    """A short tail is filled with 0xFF up to the frame size."""
    frames = split_frames(b"\x01" * 170, 160)
    assert [len(frame) for frame in frames] == [160, 160]
    assert frames[1] == b"\x01" * 10 + b"\xff" * 150


def test_pcm_is_padded_with_zeros() -> None:
    """With pad_byte=0 the tail of a PCM buffer is padded with zero samples."""
    assert split_frames(b"\x01\x02\x03\x04", 3, pad_byte=0) == [b"\x01\x02\x03", b"\x04\x00\x00"]


def test_empty_input_gives_no_frame() -> None:
    """Nothing in, nothing out (no frame of pure padding)."""
    assert split_frames(b"", 160) == []


@pytest.mark.parametrize(
    ("frame_num_bytes", "pad_byte", "message"),
    [
        (0, 0xFF, "frame_num_bytes must be positive, got 0"),
        (160, 256, "pad_byte must be between 0 and 255, got 256"),
        (160, -1, "pad_byte must be between 0 and 255, got -1"),
    ],
)
def test_bad_arguments_are_rejected(frame_num_bytes: int, pad_byte: int, message: str) -> None:
    """Invalid frame sizes and pad values raise with the value in the message."""
    with pytest.raises(ValueError, match=message):
        split_frames(b"\x00", frame_num_bytes, pad_byte=pad_byte)


def test_ulaw_silence_has_one_byte_per_sample_at_8000_hz() -> None:
    """20 ms of silence is one frame of 0xFF; zero seconds is empty."""
    assert ulaw_silence(0.02) == b"\xff" * 160
    assert len(ulaw_silence(1.0)) == 8000
    assert ulaw_silence(0.0) == b""


def test_negative_silence_is_rejected() -> None:
    """A negative duration is a caller bug."""
    with pytest.raises(ValueError, match=re.escape("must not be negative, got -0.1")):
        ulaw_silence(-0.1)
