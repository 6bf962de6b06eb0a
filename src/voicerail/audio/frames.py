"""Fixed-size framing of audio byte streams.

Telephony media is sent in fixed frames (Twilio: 20 ms, 160 μ-law bytes at
8000 Hz). These helpers cut a buffer into such frames and make μ-law silence.
"""

from __future__ import annotations

from voicerail.audio.g711 import TWILIO_SAMPLE_RATE_HZ, ULAW_SILENCE_BYTE


def split_frames(
    pcm_or_ulaw: bytes, frame_num_bytes: int, pad_byte: int = ULAW_SILENCE_BYTE
) -> list[bytes]:
    """Cut a buffer into frames of ``frame_num_bytes``, padding the last one.

    Args:
        pcm_or_ulaw: G.711 μ-law bytes (one byte per sample) or signed 16-bit
            little-endian mono PCM (two bytes per sample), at any sample rate.
        frame_num_bytes: bytes per frame (160 for a 20 ms μ-law frame at 8000 Hz,
            320 for 20 ms of PCM at 8000 Hz).
        pad_byte: value that fills the end of a short last frame: ``0xFF`` (the
            default) is μ-law silence; pass ``0`` for PCM.

    Returns:
        The frames in order, each exactly ``frame_num_bytes`` long; empty when the
        input is empty.

    Raises:
        ValueError: ``frame_num_bytes`` is not positive or ``pad_byte`` is not a
            byte value (0 to 255).
    """
    if frame_num_bytes <= 0:
        raise ValueError(f"frame_num_bytes must be positive, got {frame_num_bytes}")
    if not 0 <= pad_byte <= 0xFF:
        raise ValueError(f"pad_byte must be between 0 and 255, got {pad_byte}")
    frames = [
        pcm_or_ulaw[start : start + frame_num_bytes]
        for start in range(0, len(pcm_or_ulaw), frame_num_bytes)
    ]
    if frames and len(frames[-1]) < frame_num_bytes:
        frames[-1] = frames[-1].ljust(frame_num_bytes, bytes([pad_byte]))
    return frames


def ulaw_silence(duration_s: float) -> bytes:
    """Make μ-law silence for Twilio.

    Args:
        duration_s: length of the silence in seconds, rounded to whole samples.

    Returns:
        G.711 μ-law bytes at 8000 Hz, mono, every byte ``0xFF``.

    Raises:
        ValueError: ``duration_s`` is negative.
    """
    if duration_s < 0:
        raise ValueError(f"duration_s must not be negative, got {duration_s}")
    return bytes([ULAW_SILENCE_BYTE]) * round(duration_s * TWILIO_SAMPLE_RATE_HZ)
