"""espeak-ng TTS: contract, the sync helper, serialization, intelligibility."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers.espeak import EspeakTTS, espeak_synthesize
from voicerail.providers.whisper import FasterWhisperSTT
from voicerail.testing.conformance import check_tts
from voicerail.testing.speech_corpus import normalize_text

pytest.importorskip("espeakng_loader")


def _duration_s(pcm: bytes) -> float:
    return len(pcm) / 2 / 22050


def test_sync_synthesis_returns_22050_hz_speech() -> None:
    pcm, sample_rate_hz = espeak_synthesize("Hello, I would like to book an appointment.")
    assert sample_rate_hz == 22050
    assert 1.0 < _duration_s(pcm) < 6.0
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000


def test_faster_rate_gives_shorter_audio() -> None:
    text = "Could you tell me when the pharmacy closes today?"
    slow, _ = espeak_synthesize(text, "en-us", rate_wpm=120)
    fast, _ = espeak_synthesize(text, "en-us", rate_wpm=300)
    assert _duration_s(fast) < 0.6 * _duration_s(slow)


def test_voice_variants_sound_different() -> None:
    text = "Good afternoon."
    male, _ = espeak_synthesize(text, "en-us")
    female, _ = espeak_synthesize(text, "en-us+f3")
    assert male != female


def test_out_of_range_rate_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"rate_wpm must be within 80\.\.450, got 900"):
        EspeakTTS(rate_wpm=900)
    with pytest.raises(ValueError, match="got 10"):
        espeak_synthesize("hi", rate_wpm=10)


async def test_unknown_voice_is_a_permanent_provider_error() -> None:
    tts = EspeakTTS("xx-nonexistent", name="robot")
    with pytest.raises(
        ProviderError, match="robot: unknown espeak-ng voice 'xx-nonexistent'"
    ) as caught:
        async for _ in tts.synthesize("hello"):
            pass
    assert caught.value.error_class is ErrorClass.PERMANENT
    # The engine is left usable for the next request.
    pcm, _ = espeak_synthesize("still working")
    assert pcm


async def test_espeak_passes_the_tts_conformance_kit() -> None:
    await check_tts(lambda: EspeakTTS("en-us+f3", rate_wpm=190))


async def test_chunks_are_at_most_200_ms() -> None:
    chunks = [c async for c in EspeakTTS().synthesize("One. Two. Three. Four. Five. Six.")]
    assert len(chunks) > 3
    assert all(_duration_s(c.pcm) <= 0.2 + 1 / 22050 for c in chunks)


async def test_sync_and_async_use_from_several_threads_is_serialized() -> None:
    text = "Serialized access to a global engine."
    expected, _ = espeak_synthesize(text)
    tts = EspeakTTS()

    async def via_stream() -> bytes:
        return b"".join([c.pcm async for c in tts.synthesize(text)])

    results = await asyncio.gather(
        *(asyncio.to_thread(lambda: espeak_synthesize(text)[0]) for _ in range(3)),
        *(via_stream() for _ in range(3)),
    )
    # espeak-ng varies a few samples between runs; interleaved use would not be close.
    for pcm in results:
        assert _duration_s(pcm) == pytest.approx(_duration_s(expected), abs=0.01)


@pytest.mark.slow
async def test_whisper_understands_espeak(whisper_stt: FasterWhisperSTT, transcribe_pcm) -> None:
    import soxr

    text = "I need to change my appointment to Friday afternoon."
    pcm, rate_hz = espeak_synthesize(text, "en-us", rate_wpm=160)
    pcm_16k = soxr.resample(np.frombuffer(pcm, dtype="<i2"), rate_hz, 16000).tobytes()
    transcript = await transcribe_pcm(whisper_stt, pcm_16k, 16000)
    heard = set(normalize_text(transcript.text).split())
    assert {"change", "appointment", "friday", "afternoon"} <= heard
