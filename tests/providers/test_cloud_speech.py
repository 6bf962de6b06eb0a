"""Deepgram, ElevenLabs, Cartesia and OpenAI TTS adapters against their fake servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers.cartesia import CartesiaTTS
from voicerail.providers.deepgram import DeepgramSTT
from voicerail.providers.elevenlabs import ElevenLabsTTS
from voicerail.providers.openai_tts import OpenAITTS
from voicerail.testing.fake_servers.openai import FakeOpenAI, run_fake_openai
from voicerail.testing.fake_servers.speech import (
    FakeSpeechServer,
    run_fake_cartesia,
    run_fake_deepgram,
    run_fake_elevenlabs,
)


async def audio() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"\x00\x00" * 320


async def transcribe(stt: DeepgramSTT):
    return [t async for t in stt.transcribe(audio(), sample_rate_hz=16000)]


async def test_deepgram_streams_partials_then_one_final_with_usage():
    fake = FakeSpeechServer(transcript="book me for tuesday")
    async with run_fake_deepgram(fake) as url:
        results = await transcribe(DeepgramSTT(api_key="dg-key", base_url=url))
    assert [t.is_final for t in results] == [False, True]
    final = results[-1]
    assert final.text == "book me for tuesday" and final.confidence == pytest.approx(0.9)
    assert final.usage.audio_s == pytest.approx(4 * 320 / 16000)
    assert final.usage.model_version == "2026-01-01.1"
    path = fake.paths[0]
    assert path.startswith("/v1/listen?") and "encoding=linear16" in path
    assert "sample_rate=16000" in path and "interim_results=true" in path
    assert fake.headers[0]["authorization"] == "Token dg-key"
    assert sum(len(m) for m in fake.received if isinstance(m, bytes)) == 4 * 640
    assert json.loads(fake.received[-1]) == {"type": "CloseStream"}


@pytest.mark.parametrize(
    ("fake", "error_class"),
    [
        (FakeSpeechServer(reject_status=401), ErrorClass.PERMANENT),
        (FakeSpeechServer(reject_status=429), ErrorClass.TRANSIENT),
        (FakeSpeechServer(reject_status=503), ErrorClass.TRANSIENT),
        (FakeSpeechServer(close_code=1011), ErrorClass.TRANSIENT),
    ],
    ids=["401", "429", "503", "closed-1011"],
)
async def test_deepgram_failures_are_classified(fake, error_class):
    async with run_fake_deepgram(fake) as url:
        with pytest.raises(ProviderError) as caught:
            await transcribe(DeepgramSTT(api_key="k", base_url=url))
    assert caught.value.error_class is error_class


async def test_deepgram_rejects_an_unsupported_rate():
    with pytest.raises(ValueError, match="11025 Hz"):
        [t async for t in DeepgramSTT(api_key="k").transcribe(audio(), sample_rate_hz=11025)]


async def test_elevenlabs_sends_the_documented_sequence_and_streams_pcm():
    fake = FakeSpeechServer(audio_num_bytes=3200)
    async with run_fake_elevenlabs(fake) as url:
        tts = ElevenLabsTTS("voice-1", api_key="xi-key", base_url=url)
        chunks = [c async for c in tts.synthesize("Hello there.")]
    assert sum(len(c.pcm) for c in chunks) == 3200
    assert chunks[-1].text == "Hello there." and chunks[-1].usage.characters == 12
    assert "/v1/text-to-speech/voice-1/stream-input?" in fake.paths[0]
    assert "output_format=pcm_16000" in fake.paths[0]
    first, text, end = fake.received
    assert first["text"] == " " and first["xi_api_key"] == "xi-key"
    assert text == {"text": "Hello there. ", "flush": True}
    assert end == {"text": ""}


async def test_cartesia_request_and_stream():
    fake = FakeSpeechServer(audio_num_bytes=1600)
    async with run_fake_cartesia(fake) as url:
        tts = CartesiaTTS("voice-9", api_key="c-key", base_url=url, sample_rate_hz=16000)
        chunks = [c async for c in tts.synthesize("Hi.")]
    assert sum(len(c.pcm) for c in chunks) == 1600
    [request] = fake.received
    assert request["transcript"] == "Hi." and request["voice"] == {"mode": "id", "id": "voice-9"}
    assert request["output_format"] == {
        "container": "raw",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
    }
    assert "api_key=c-key" in fake.paths[0] and "cartesia_version=" in fake.paths[0]


@pytest.mark.parametrize(
    "run", [run_fake_elevenlabs, run_fake_cartesia], ids=["elevenlabs", "cartesia"]
)
async def test_tts_drop_mid_stream_is_transient_after_partial_audio(run):
    fake = FakeSpeechServer(close_code=1011)
    async with run(fake) as url:
        tts = (
            ElevenLabsTTS("v", api_key="k", base_url=url)
            if run is run_fake_elevenlabs
            else CartesiaTTS("v", api_key="k", base_url=url)
        )
        received = []
        with pytest.raises(ProviderError) as caught:
            async for chunk in tts.synthesize("Hello."):
                received.append(chunk)
    assert received and caught.value.retryable


async def test_openai_tts_keeps_samples_whole_and_classifies_errors():
    fake = FakeOpenAI()
    async with run_fake_openai(fake) as base_url:
        tts = OpenAITTS(base_url=base_url, api_key="sk")
        chunks = [c async for c in tts.synthesize("Hello.")]
        await tts.aclose()
    assert all(len(c.pcm) % 2 == 0 for c in chunks)
    assert sum(len(c.pcm) for c in chunks) == 3 * 2403 + 1
    assert chunks[-1].sample_rate_hz == 24000 and chunks[-1].usage.characters == 6
    assert fake.requests[0]["response_format"] == "pcm"
    async with run_fake_openai(FakeOpenAI(status=401)) as base_url:
        tts = OpenAITTS(base_url=base_url)
        with pytest.raises(ProviderError) as caught:
            [c async for c in tts.synthesize("Hello.")]
        await tts.aclose()
    assert caught.value.error_class is ErrorClass.PERMANENT and caught.value.status == 401
