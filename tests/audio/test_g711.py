"""G.711 μ-law codec: known code points, round trips, error bounds."""

from __future__ import annotations

import numpy as np
import pytest

from voicerail.audio.g711 import (
    FRAME_DURATION_S,
    TWILIO_SAMPLE_RATE_HZ,
    ULAW_FRAME_NUM_BYTES,
    ULAW_SILENCE_BYTE,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)


def _pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def _samples(pcm: bytes) -> list[int]:
    return [int(s) for s in np.frombuffer(pcm, dtype="<i2")]


def test_frame_constants_agree() -> None:
    """A 20 ms frame at 8000 Hz is 160 one-byte μ-law samples."""
    assert round(TWILIO_SAMPLE_RATE_HZ * FRAME_DURATION_S) == ULAW_FRAME_NUM_BYTES == 160


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8)],
)
def test_decodes_known_code_points(code: int, sample: int) -> None:
    """Codes decode to the G.711 table values scaled to 16 bits."""
    assert _samples(ulaw_to_pcm16(bytes([code]))) == [sample]


def test_encodes_known_samples() -> None:
    """Zero is 0xFF, the extremes saturate to the top codes."""
    assert pcm16_to_ulaw(_pcm(0, 32767, -32768, 1, -1)) == bytes([0xFF, 0x80, 0x00, 0xFF, 0x7E])


def test_silence_byte_decodes_to_zero() -> None:
    """The padding byte is digital silence."""
    assert _samples(ulaw_to_pcm16(bytes([ULAW_SILENCE_BYTE]))) == [0]


def test_every_code_survives_decode_then_encode() -> None:
    """Decoding then encoding gives back each code, except negative zero."""
    codes = bytes(range(256))
    round_trip = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    differing = [code for code in range(256) if round_trip[code] != code]
    assert differing == [0x7F]
    assert round_trip[0x7F] == 0xFF


def test_encode_then_decode_error_is_bounded() -> None:
    """Every 16-bit value comes back within 1/16 of itself (16 near zero)."""
    samples = np.arange(-32768, 32768, dtype=np.int64)
    decoded = np.frombuffer(
        ulaw_to_pcm16(pcm16_to_ulaw(samples.astype("<i2").tobytes())), dtype="<i2"
    ).astype(np.int64)
    error = np.abs(decoded - samples)
    assert np.all(error <= np.maximum(16, np.abs(samples) / 16))


def test_sine_round_trip_keeps_telephone_quality() -> None:
    """A speech-level tone survives with the SNR expected of μ-law (above 30 dB)."""
    t = np.arange(8000) / TWILIO_SAMPLE_RATE_HZ
    tone = np.rint(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    decoded = np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(tone.tobytes())), dtype="<i2")
    noise = decoded.astype(np.float64) - tone
    snr_db = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr_db > 30


def test_lengths_and_empty_input() -> None:
    """One byte per sample one way, two the other; empty stays empty."""
    assert len(ulaw_to_pcm16(bytes(ULAW_FRAME_NUM_BYTES))) == 2 * ULAW_FRAME_NUM_BYTES
    assert len(pcm16_to_ulaw(bytes(320))) == 160
    assert ulaw_to_pcm16(b"") == b""
    assert pcm16_to_ulaw(b"") == b""


def test_odd_length_pcm_is_rejected() -> None:
    """Half a sample is a caller bug, reported with the byte count."""
    with pytest.raises(ValueError, match="even number of bytes, got 3 bytes"):
        pcm16_to_ulaw(b"\x00\x01\x02")
