"""G.711 μ-law codec for telephone audio.

Implements ITU-T G.711 (11/1988) μ-law through the standard library's ``audioop``
(about 2 µs per 20 ms frame). Twilio Media Streams carry ``audio/x-mulaw`` at
8000 Hz, mono, base64 in 20 ms messages of 160 bytes
(https://www.twilio.com/docs/voice/media-streams/websocket-messages, 2025).
"""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():
    # audioop is deprecated since Python 3.11 and removed in 3.13 (PEP 594). It is
    # still the fastest G.711 codec at hand on 3.11 (``audioop-lts`` needs 3.13), and
    # its import-time DeprecationWarning would otherwise fail every test run, which
    # treats warnings as errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

TWILIO_SAMPLE_RATE_HZ = 8000
"""Sample rate of Twilio Media Streams audio (μ-law, mono)."""

FRAME_DURATION_S = 0.02
"""Duration of one Twilio media frame."""

ULAW_FRAME_NUM_BYTES = 160
"""Bytes in one 20 ms μ-law frame at 8000 Hz (one byte per sample)."""

ULAW_SILENCE_BYTE = 0xFF
"""The μ-law code for a zero sample (positive zero), used to pad and to make silence."""

_PCM16_SAMPLE_NUM_BYTES = 2

# audioop works in native byte order; our PCM is little-endian on every platform.
_NATIVE_IS_LITTLE_ENDIAN = sys.byteorder == "little"


def ulaw_to_pcm16(payload: bytes) -> bytes:
    """Decode μ-law to PCM.

    Args:
        payload: G.711 μ-law bytes, one byte per sample, mono, at any sample rate
            (8000 Hz for Twilio).

    Returns:
        Signed 16-bit little-endian mono PCM at the same sample rate, two bytes per
        input byte.
    """
    pcm = audioop.ulaw2lin(payload, _PCM16_SAMPLE_NUM_BYTES)
    if _NATIVE_IS_LITTLE_ENDIAN:
        return pcm
    return audioop.byteswap(pcm, _PCM16_SAMPLE_NUM_BYTES)  # pragma: no cover


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM to μ-law.

    Args:
        pcm: signed 16-bit little-endian mono PCM at any sample rate (8000 Hz for
            Twilio); an even number of bytes.

    Returns:
        G.711 μ-law bytes at the same sample rate, one byte per sample.

    Raises:
        ValueError: ``pcm`` has an odd number of bytes.
    """
    check_pcm16(pcm)
    if not _NATIVE_IS_LITTLE_ENDIAN:  # pragma: no cover
        pcm = audioop.byteswap(pcm, _PCM16_SAMPLE_NUM_BYTES)
    return audioop.lin2ulaw(pcm, _PCM16_SAMPLE_NUM_BYTES)


def check_pcm16(pcm: bytes) -> None:
    """Check that ``pcm`` holds whole signed 16-bit samples.

    Args:
        pcm: signed 16-bit little-endian mono PCM at any sample rate.

    Raises:
        ValueError: ``pcm`` has an odd number of bytes.
    """
    if len(pcm) % _PCM16_SAMPLE_NUM_BYTES:
        raise ValueError(f"16-bit pcm must have an even number of bytes, got {len(pcm)} bytes")
