"""Sample-rate conversion with soxr, and WAV file input/output.

Streaming resampling keeps the filter's state between chunks so that a stream cut
into arbitrary chunks comes out as it would in one piece (libsoxr,
https://sourceforge.net/p/soxr/wiki/Home/; python-soxr 0.5+,
https://python-soxr.readthedocs.io/).

soxr runs here on float32 although the API takes and returns 16-bit PCM: soxr's
int16 output is dithered with a random seed per stream, so the same input gave
outputs differing by a few LSB from run to run. On float32 soxr does not dither;
we round to int16 ourselves, and results are reproducible, and streaming equals
one-shot sample for sample. WAV files are read and written with the
standard library's ``wave`` module: integer PCM only (``WAVE_FORMAT_PCM``).
"""

from __future__ import annotations

import os
import wave

import numpy as np
import numpy.typing as npt
import soxr

from voicerail.audio.g711 import check_pcm16

_PCM16 = np.dtype("<i2")
_INT16_FULL_SCALE = 32768.0


class StreamResampler:
    """Resample one continuous PCM stream, chunk by chunk.

    Feed chunks with :meth:`process` and end the stream with :meth:`flush`, which
    returns the samples still held in the filter and readies the resampler for a
    new stream. Not thread-safe: one instance per stream.

    Args:
        in_rate_hz: sample rate of the input PCM.
        out_rate_hz: sample rate of the output PCM.
        quality: soxr quality recipe: ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"`` or
            ``"VHQ"``.

    Raises:
        ValueError: a rate is not positive, or the rates differ and ``quality`` is
            unknown to soxr.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> None:
        _check_rates(in_rate_hz, out_rate_hz)
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        # Equal rates need no filter: process() then hands the input back as is.
        self._stream: soxr.ResampleStream | None = None
        if in_rate_hz != out_rate_hz:
            self._stream = soxr.ResampleStream(
                in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality
            )

    def process(self, pcm: bytes) -> bytes:
        """Resample the next chunk of the stream.

        Args:
            pcm: signed 16-bit little-endian mono PCM at ``in_rate_hz``; any number
                of whole samples, including none.

        Returns:
            Signed 16-bit little-endian mono PCM at ``out_rate_hz``. The filter
            delays its output, so early chunks may come back shorter (or empty);
            :meth:`flush` returns the rest.

        Raises:
            ValueError: ``pcm`` has an odd number of bytes.
        """
        check_pcm16(pcm)
        if self._stream is None:
            return bytes(pcm)
        return _to_bytes(self._stream.resample_chunk(_to_array(pcm)))

    def flush(self) -> bytes:
        """End the stream and return the samples still held in the filter.

        Returns:
            Signed 16-bit little-endian mono PCM at ``out_rate_hz``. After this call
            the resampler starts a new stream.
        """
        if self._stream is None:
            return b""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return _to_bytes(tail)


def resample(pcm: bytes, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> bytes:
    """Resample a whole PCM buffer at once.

    Args:
        pcm: signed 16-bit little-endian mono PCM at ``in_rate_hz``.
        in_rate_hz: sample rate of the input.
        out_rate_hz: sample rate of the output.
        quality: soxr quality recipe (see :class:`StreamResampler`).

    Returns:
        Signed 16-bit little-endian mono PCM at ``out_rate_hz``, of
        ``round(num_samples * out_rate_hz / in_rate_hz)`` samples; the input
        unchanged when the rates are equal.

    Raises:
        ValueError: a rate is not positive, ``pcm`` has an odd number of bytes, or
            resampling is needed and ``quality`` is unknown to soxr.
    """
    _check_rates(in_rate_hz, out_rate_hz)
    check_pcm16(pcm)
    if in_rate_hz == out_rate_hz or not pcm:
        return bytes(pcm)
    out = soxr.resample(_to_array(pcm), in_rate_hz, out_rate_hz, quality=quality)
    return _to_bytes(out)


def read_wav_mono(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Read an integer-PCM WAV file as 16-bit mono.

    Several channels are mixed down by averaging them. 8-bit (unsigned), 16-, 24-
    and 32-bit (signed) samples are scaled to 16 bits with rounding.

    Args:
        path: the WAV file.

    Returns:
        ``(pcm, sample_rate_hz)``: signed 16-bit little-endian mono PCM at the
        file's own sample rate, and that rate.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: the file is not a WAV file or not integer PCM (for example
            32-bit float or compressed), or has an unsupported sample width.
    """
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            num_channels = wav.getnchannels()
            sample_width_num_bytes = wav.getsampwidth()
            sample_rate_hz = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a readable integer-pcm wav file: {exc}") from exc
    if sample_width_num_bytes not in (1, 2, 3, 4):
        raise ValueError(
            f"{os.fspath(path)}: unsupported sample width of {sample_width_num_bytes} bytes"
            " (expected 1, 2, 3 or 4)"
        )
    # wave only checks the header; a truncated last frame would break the reshape.
    frame_num_bytes = num_channels * sample_width_num_bytes
    raw = raw[: len(raw) - len(raw) % frame_num_bytes]
    if sample_width_num_bytes == 2 and num_channels == 1:
        return raw, sample_rate_hz
    samples = _decode_to_float(raw, sample_width_num_bytes).reshape(-1, num_channels)
    mono = samples.mean(axis=1)
    pcm = np.clip(np.rint(mono * _INT16_FULL_SCALE), -32768, 32767).astype(_PCM16)
    return pcm.tobytes(), sample_rate_hz


def write_wav(path: str | os.PathLike[str], pcm: bytes, sample_rate_hz: int) -> None:
    """Write PCM to a 16-bit mono WAV file.

    Args:
        path: the file to create or overwrite.
        pcm: signed 16-bit little-endian mono PCM at ``sample_rate_hz``.
        sample_rate_hz: the rate written in the header.

    Raises:
        OSError: the file cannot be written.
        ValueError: ``pcm`` has an odd number of bytes or the rate is not positive.
    """
    check_pcm16(pcm)
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm)


def _decode_to_float(raw: bytes, sample_width_num_bytes: int) -> npt.NDArray[np.float64]:
    """Decode interleaved WAV integer samples to floats in [-1, 1)."""
    if sample_width_num_bytes == 1:
        # 8-bit WAV samples are unsigned, centred on 128.
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if sample_width_num_bytes == 3:
        # No numpy dtype for 24 bits: place each sample in the top three bytes of an
        # int32 (the sign comes with the top byte), then scale as 32-bit.
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        padded = np.zeros((len(triplets), 4), dtype=np.uint8)
        padded[:, 1:] = triplets
        return padded.view("<i4").reshape(-1).astype(np.float64) / 2.0**31
    dtype = "<i2" if sample_width_num_bytes == 2 else "<i4"
    full_scale = 2.0 ** (8 * sample_width_num_bytes - 1)
    return np.frombuffer(raw, dtype=dtype).astype(np.float64) / full_scale


def _check_rates(in_rate_hz: int, out_rate_hz: int) -> None:
    if in_rate_hz <= 0 or out_rate_hz <= 0:
        raise ValueError(
            f"sample rates must be positive, got {in_rate_hz} hz in and {out_rate_hz} hz out"
        )


def _to_array(pcm: bytes) -> npt.NDArray[np.float32]:
    # int16 / 32768 is exact in float32.
    return np.frombuffer(pcm, dtype=_PCM16).astype(np.float32) / np.float32(_INT16_FULL_SCALE)


def _to_bytes(samples: npt.NDArray[np.float32]) -> bytes:
    scaled = np.rint(samples * np.float32(_INT16_FULL_SCALE))
    return np.clip(scaled, -32768, 32767).astype(_PCM16).tobytes()
