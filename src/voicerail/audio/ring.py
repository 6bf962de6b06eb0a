"""The most recent inbound audio of a call, addressed in stream seconds.

Stream time starts at zero with the first sample appended and advances by one
sample period per sample, the same clock the endpointer's timestamps use
(:mod:`voicerail.audio.endpointing`). The buffer keeps the last ``max_s`` seconds,
so that an utterance can be read back from its backdated start (pre-roll).
"""

from __future__ import annotations

from voicerail.audio.g711 import check_pcm16

_SAMPLE_NUM_BYTES = 2


class AudioRingBuffer:
    """Keeps the last ``max_s`` seconds of a PCM stream.

    Args:
        max_s: seconds of audio kept; older audio is dropped as new audio arrives.
        sample_rate_hz: rate of the PCM appended.

    Raises:
        ValueError: ``max_s`` or ``sample_rate_hz`` is not positive.
    """

    def __init__(self, max_s: float, sample_rate_hz: int) -> None:
        if max_s <= 0 or sample_rate_hz <= 0:
            raise ValueError(
                f"max_s and sample_rate_hz must be positive, got {max_s} and {sample_rate_hz}"
            )
        self.max_s = max_s
        self.sample_rate_hz = sample_rate_hz
        self._max_num_bytes = _SAMPLE_NUM_BYTES * max(1, round(max_s * sample_rate_hz))
        self._buffer = bytearray()
        # Stream position (in samples) of the first byte of _buffer.
        self._start_sample = 0

    @property
    def total_s(self) -> float:
        """Stream time (seconds) at the end of the audio appended so far."""
        return self._end_sample / self.sample_rate_hz

    @property
    def start_s(self) -> float:
        """Stream time (seconds) of the oldest audio still kept."""
        return self._start_sample / self.sample_rate_hz

    def append(self, pcm: bytes) -> None:
        """Add audio at the end of the stream, dropping what falls past ``max_s``.

        Args:
            pcm: signed 16-bit little-endian mono PCM at ``sample_rate_hz``.

        Raises:
            ValueError: ``pcm`` has an odd number of bytes.
        """
        check_pcm16(pcm)
        self._buffer += pcm
        excess_num_bytes = len(self._buffer) - self._max_num_bytes
        if excess_num_bytes > 0:
            del self._buffer[:excess_num_bytes]
            self._start_sample += excess_num_bytes // _SAMPLE_NUM_BYTES

    def since(self, at_s: float) -> bytes:
        """Return the audio from stream time ``at_s`` to the end.

        Args:
            at_s: stream time in seconds, rounded to the nearest sample. Times
                before :attr:`start_s` (audio already dropped) read from
                :attr:`start_s`; times at or after :attr:`total_s` give nothing.

        Returns:
            Signed 16-bit little-endian mono PCM at ``sample_rate_hz``.
        """
        at_sample = round(at_s * self.sample_rate_hz)
        offset_num_samples = max(0, at_sample - self._start_sample)
        return bytes(self._buffer[offset_num_samples * _SAMPLE_NUM_BYTES :])

    @property
    def _end_sample(self) -> int:
        return self._start_sample + len(self._buffer) // _SAMPLE_NUM_BYTES
