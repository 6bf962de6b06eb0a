"""Audio levels for latency measurement: when speech ends, when agent audio is audible.

Voice-to-voice latency is what the caller hears: from the end of their *speech*
to the first *audible* agent audio at their ear. Neither end is the obvious
one: a caller's recording carries trailing silence after the last word, and an
agent's reply may open with silent frames (TTS leading silence, padding). Both
ends are therefore found by level, on the decoded audio, in 20 ms frames:

1. A frame's level is its mean power in dB relative to a full-scale square wave
   (dBFS: a full-scale sine reads about -3 dBFS), on signed 16-bit PCM.
2. A frame is *audible* when its level is at or above ``AUDIBLE_DBFS`` (-45 dBFS).
   Telephone speech sits around -30 to -10 dBFS; line noise and the tails of
   synthesized silence sit below -55 dBFS; -45 dBFS keeps the soft ends of
   words (fricatives) while ignoring dither and comfort noise.
3. The end of speech in a caller's recording is the end of its last audible
   frame (a frame-aligned measure: at most one frame, 20 ms, late).
"""

from __future__ import annotations

import math

import numpy as np

from voicerail.audio.g711 import ULAW_FRAME_NUM_BYTES, ulaw_to_pcm16

AUDIBLE_DBFS = -45.0
"""Level (dBFS, mean power over one 20 ms frame) at or above which audio is audible."""

_FULL_SCALE_POWER = 32768.0**2
_SILENCE_DBFS = -120.0  # reported for digital silence instead of -inf


def pcm16_level_dbfs(pcm: bytes) -> float:
    """Mean power of ``pcm`` in dBFS.

    Args:
        pcm: signed 16-bit little-endian mono PCM, any sample rate; may be empty.

    Returns:
        The level in dBFS, -120.0 for digital silence or no samples.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return _SILENCE_DBFS
    power = float(np.mean(samples * samples))
    if power <= 0.0:
        return _SILENCE_DBFS
    return max(_SILENCE_DBFS, 10.0 * math.log10(power / _FULL_SCALE_POWER))


def ulaw_is_audible(ulaw: bytes, threshold_dbfs: float = AUDIBLE_DBFS) -> bool:
    """Whether a μ-law frame (8 kHz mono, usually 160 bytes) is audible (rule 2)."""
    return pcm16_level_dbfs(ulaw_to_pcm16(ulaw)) >= threshold_dbfs


def ulaw_speech_num_frames(
    ulaw: bytes,
    threshold_dbfs: float = AUDIBLE_DBFS,
    frame_num_bytes: int = ULAW_FRAME_NUM_BYTES,
) -> int:
    """Frames of ``ulaw`` up to and including the last audible one (rule 3).

    Args:
        ulaw: G.711 μ-law, 8000 Hz mono (one byte per sample).
        threshold_dbfs: level at or above which a frame is audible.
        frame_num_bytes: bytes per frame (160: 20 ms at 8 kHz); a trailing
            part-frame counts as one frame.

    Returns:
        0 when no frame is audible; otherwise the end of speech is
        ``result * frame_num_bytes / 8000`` seconds into ``ulaw``.
    """
    if not ulaw:
        return 0
    num_frames = -(-len(ulaw) // frame_num_bytes)
    padded = ulaw.ljust(num_frames * frame_num_bytes, b"\xff")
    samples = np.frombuffer(ulaw_to_pcm16(padded), dtype="<i2").astype(np.float64)
    power = np.mean(np.square(samples.reshape(num_frames, frame_num_bytes)), axis=1)
    threshold_power = _FULL_SCALE_POWER * 10.0 ** (threshold_dbfs / 10.0)
    audible = np.flatnonzero(power >= threshold_power)
    return int(audible[-1]) + 1 if audible.size else 0
