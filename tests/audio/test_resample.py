"""Resampling (streaming and one-shot) and WAV input/output."""

from __future__ import annotations

import re
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voicerail.audio.resample import StreamResampler, read_wav_mono, resample, write_wav


def _noise_pcm(num_samples: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(num_samples) * 3000).astype("<i2").tobytes()


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def _stream(resampler: StreamResampler, pcm: bytes, chunk_num_bytes: list[int]) -> bytes:
    out, position, index = [], 0, 0
    while position < len(pcm):
        size = chunk_num_bytes[index % len(chunk_num_bytes)]
        out.append(resampler.process(pcm[position : position + size]))
        position += size
        index += 1
    out.append(resampler.flush())
    return b"".join(out)


@pytest.mark.parametrize(
    ("in_rate_hz", "out_rate_hz"), [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000)]
)
def test_streaming_matches_one_shot(in_rate_hz: int, out_rate_hz: int) -> None:
    """Irregular chunks plus flush give exactly the one-shot result."""
    pcm = _noise_pcm(in_rate_hz)  # one second
    one_shot = _samples(resample(pcm, in_rate_hz, out_rate_hz))
    streamed = _samples(
        _stream(StreamResampler(in_rate_hz, out_rate_hz), pcm, [2, 318, 320, 1000, 0, 14])
    )
    assert len(one_shot) == len(streamed) == out_rate_hz
    assert np.array_equal(one_shot, streamed)


def test_output_length_follows_the_rate_ratio() -> None:
    """20 ms frames at 8 kHz become 40 ms worth of samples at 16 kHz, in total."""
    resampler = StreamResampler(8000, 16000)
    pcm = _noise_pcm(160 * 25)
    out = _stream(resampler, pcm, [320])
    assert len(out) == 2 * len(pcm)
    assert len(resample(pcm, 8000, 16000)) == 2 * len(pcm)
    assert len(resample(pcm, 8000, 24000)) == 3 * len(pcm)


def test_tone_keeps_its_amplitude() -> None:
    """A 440 Hz tone resampled 8 → 16 kHz keeps its level within 1%."""
    t = np.arange(8000) / 8000
    tone = np.rint(10000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    out = _samples(resample(tone, 8000, 16000))[2000:-2000]
    rms = np.sqrt(np.mean(out.astype(np.float64) ** 2))
    assert rms == pytest.approx(10000 / np.sqrt(2), rel=0.01)


def test_overshoot_is_clipped_not_wrapped() -> None:
    """A full-scale square wave rings past full scale; samples saturate at the limits."""
    square = np.where(np.arange(8000) % 40 < 20, 32767, -32768).astype("<i2").tobytes()
    out = _samples(resample(square, 8000, 16000))
    assert out.max() == 32767
    assert out.min() == -32768


def test_flush_starts_a_new_stream_and_output_is_reproducible() -> None:
    """After flush the same input gives the same bytes again (no random dither)."""
    resampler = StreamResampler(16000, 8000)
    pcm = _noise_pcm(3200)
    first = _stream(resampler, pcm, [640])
    second = _stream(resampler, pcm, [640])
    assert first == second


def test_equal_rates_pass_audio_through() -> None:
    """Equal rates need no filter: input comes back unchanged, flush is empty."""
    resampler = StreamResampler(8000, 8000)
    pcm = _noise_pcm(160)
    assert resampler.process(pcm) == pcm
    assert resampler.flush() == b""
    assert resample(pcm, 8000, 8000) == pcm


def test_empty_input_gives_empty_output() -> None:
    """Nothing in, nothing out, one-shot and streaming."""
    assert resample(b"", 8000, 16000) == b""
    assert StreamResampler(8000, 16000).flush() == b""


def test_bad_arguments_are_rejected() -> None:
    """Odd-length PCM, non-positive rates and unknown qualities raise ValueError."""
    with pytest.raises(ValueError, match="even number of bytes, got 3 bytes"):
        StreamResampler(8000, 16000).process(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even number of bytes, got 1 bytes"):
        resample(b"\x00", 8000, 16000)
    with pytest.raises(ValueError, match="got 0 hz in and 8000 hz out"):
        resample(b"", 0, 8000)
    with pytest.raises(ValueError, match="got 8000 hz in and -1 hz out"):
        StreamResampler(8000, -1)
    with pytest.raises(ValueError):
        StreamResampler(8000, 16000, quality="best")


def _write_int_wav(
    path: Path, frames: list[list[int]], sample_width_num_bytes: int, rate_hz: int = 8000
) -> None:
    """Write frames of per-channel integer samples with the stdlib wave module."""
    raw = bytearray()
    for frame in frames:
        for sample in frame:
            if sample_width_num_bytes == 1:
                raw += bytes([sample])  # 8-bit WAV is unsigned
            else:
                raw += sample.to_bytes(sample_width_num_bytes, "little", signed=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(len(frames[0]))
        wav.setsampwidth(sample_width_num_bytes)
        wav.setframerate(rate_hz)
        wav.writeframes(bytes(raw))


def _riff(format_tag: int, num_channels: int, rate_hz: int, bits: int, data: bytes) -> bytes:
    """A minimal RIFF/WAVE file with any format tag and sample size."""
    block_num_bytes = num_channels * ((bits + 7) // 8)
    fmt = struct.pack(
        "<HHIIHH",
        format_tag,
        num_channels,
        rate_hz,
        rate_hz * block_num_bytes,
        block_num_bytes,
        bits,
    )
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_round_trip(tmp_path: Path) -> None:
    """16-bit mono written by write_wav reads back byte for byte with its rate."""
    pcm = _noise_pcm(1600)
    write_wav(tmp_path / "a.wav", pcm, 16000)
    assert read_wav_mono(tmp_path / "a.wav") == (pcm, 16000)
    assert read_wav_mono(str(tmp_path / "a.wav")) == (pcm, 16000)


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    """Channels are averaged, with rounding."""
    path = tmp_path / "stereo.wav"
    _write_int_wav(path, [[1000, 3000], [-32768, 32767], [5, 6]], 2, rate_hz=44100)
    pcm, rate_hz = read_wav_mono(path)
    assert rate_hz == 44100
    assert _samples(pcm).tolist() == [2000, 0, 6]


@pytest.mark.parametrize(
    ("sample_width_num_bytes", "stored", "expected"),
    [
        (1, [128, 255, 0, 129], [0, 32512, -32768, 256]),
        (3, [0x123456, -1, -(2**23), 2**23 - 1], [0x1234, 0, -32768, 32767]),
        (4, [2**31 - 1, -(2**31), 0x12345678, 0x00008000], [32767, -32768, 0x1234, 0]),
    ],
)
def test_other_integer_widths_are_scaled_to_16_bits(
    tmp_path: Path, sample_width_num_bytes: int, stored: list[int], expected: list[int]
) -> None:
    """8-bit unsigned, 24- and 32-bit signed samples map to the same 16-bit level."""
    path = tmp_path / f"w{sample_width_num_bytes}.wav"
    _write_int_wav(path, [[sample] for sample in stored], sample_width_num_bytes)
    pcm, rate_hz = read_wav_mono(path)
    assert rate_hz == 8000
    assert _samples(pcm).tolist() == expected


def test_float_wav_is_rejected(tmp_path: Path) -> None:
    """32-bit float WAV (format 3) is not integer PCM."""
    path = tmp_path / "float.wav"
    path.write_bytes(_riff(3, 1, 8000, 32, bytes(16)))
    with pytest.raises(ValueError, match=re.escape("float.wav: not a readable integer-pcm")):
        read_wav_mono(path)


def test_unsupported_sample_width_is_rejected(tmp_path: Path) -> None:
    """A 40-bit sample width is named in the error."""
    path = tmp_path / "wide.wav"
    path.write_bytes(_riff(1, 1, 8000, 40, bytes(20)))
    with pytest.raises(ValueError, match="unsupported sample width of 5 bytes"):
        read_wav_mono(path)


@pytest.mark.parametrize("content", [b"", b"not a wav file at all"])
def test_non_wav_files_are_rejected(tmp_path: Path, content: bytes) -> None:
    """Empty and non-RIFF files raise ValueError naming the file."""
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape("bad.wav: not a readable")):
        read_wav_mono(path)


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    """A missing file is an OSError, not a format problem."""
    with pytest.raises(FileNotFoundError):
        read_wav_mono(tmp_path / "missing.wav")


def test_write_wav_rejects_bad_input(tmp_path: Path) -> None:
    """Odd-length PCM and a non-positive rate raise ValueError."""
    with pytest.raises(ValueError, match="even number of bytes"):
        write_wav(tmp_path / "x.wav", b"\x00", 8000)
    with pytest.raises(ValueError, match="sample_rate_hz must be positive, got 0"):
        write_wav(tmp_path / "x.wav", b"", 0)


def test_truncated_wav_drops_the_partial_last_frame(tmp_path: Path) -> None:
    """A file cut inside a stereo frame reads the whole frames before the cut."""
    path = tmp_path / "cut.wav"
    _write_int_wav(path, [[100, 300], [1000, 3000], [7, 7]], 2)
    path.write_bytes(path.read_bytes()[:-3])
    pcm, _ = read_wav_mono(path)
    assert _samples(pcm).tolist() == [200, 2000]
