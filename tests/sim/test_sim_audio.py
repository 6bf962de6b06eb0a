"""Caller audio preparation and the caller's pre-formatted media messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import voicerail.wire.twilio as twilio
from voicerail.errors import ConfigError
from voicerail.sim.audio import mix_noise, resolve_audio, trim_silence
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.sim.scenario import NoiseSpec


def tone(seconds: float, amplitude: float = 8000.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_is_mixed_at_the_requested_snr(kind: str) -> None:
    """Speech-to-noise ratio of the mix matches ``snr_db`` within 0.5 dB."""
    speech = tone(1.0)
    mixed = np.frombuffer(mix_noise(speech, NoiseSpec(kind=kind, snr_db=10.0)), dtype="<i2")
    pad = int(0.3 * 8000)
    clean = np.frombuffer(speech, dtype="<i2").astype(np.float64)
    noise = mixed[pad : pad + len(clean)].astype(np.float64) - clean
    speech_rms = rms(np.concatenate([np.zeros(pad), clean, np.zeros(pad)]))
    noise_rms = rms(np.concatenate([mixed[:pad], noise, mixed[-pad:]]))
    assert 20 * np.log10(speech_rms / noise_rms) == pytest.approx(10.0, abs=0.5)


def test_trim_silence_keeps_the_speech_and_a_little_margin() -> None:
    """Digital silence around a synthesized utterance is cut to 50 ms each side."""
    pcm = b"\x00\x00" * 4000 + tone(0.5) + b"\x00\x00" * 8000
    trimmed = trim_silence(pcm)
    assert len(trimmed) // 2 == pytest.approx(0.6 * 8000, abs=20)


def test_missing_audio_names_the_debian_package(tmp_path: Path) -> None:
    """A missing recorded prompt says which package provides it."""
    with pytest.raises(ConfigError, match="asterisk-core-sounds-en-wav"):
        resolve_audio("asterisk:no-such-prompt", tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        resolve_audio("missing.wav", tmp_path)


async def test_preformatted_media_message_is_what_serialize_inbound_produces() -> None:
    """The caller's fast message template is byte for byte the codec's serialization."""
    call = SimulatedTwilioCall("ws://unused")
    sent: list[str] = []

    async def capture(text: str) -> None:
        sent.append(text)

    call._send_text = capture  # type: ignore[method-assign]
    call._speech.append(bytes(range(160)))
    await call._send_frame(3)
    await call._send_frame(4)
    for index, payload in enumerate([bytes(range(160)), b"\xff" * 160]):
        expected = twilio.serialize_inbound(
            twilio.Media(
                sequence_number=index + 1,
                stream_sid=call.result.stream_sid,
                track="inbound",
                chunk=index + 1,
                timestamp_ms=(index + 3) * 20,
                payload=payload,
            )
        )
        assert sent[index] == expected
