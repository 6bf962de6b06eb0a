"""OpenAITTS against the fake OpenAI server over a real socket."""

from __future__ import annotations

import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.openai_tts import OPENAI_PCM_RATE_HZ, OpenAITTS
from voicerail.testing.conformance import check_tts
from voicerail.testing.fake_servers.openai import FakeOpenAI, run_fake_openai


async def test_speech_streams_whole_samples_at_24_khz_and_sends_the_documented_request():
    fake = FakeOpenAI(seconds_per_char=0.05)
    async with run_fake_openai(fake) as base_url:
        tts = OpenAITTS(voice="coral", base_url=base_url, api_key="sk", instructions="Warm.")
        chunks = [c async for c in tts.synthesize("Hello there.")]
        await tts.aclose()
    pcm = b"".join(c.pcm for c in chunks)
    assert len(pcm) == round(12 * 0.05 * OPENAI_PCM_RATE_HZ) * 2
    assert len(chunks) > 2 and all(len(c.pcm) % 2 == 0 for c in chunks)
    assert {c.sample_rate_hz for c in chunks} == {OPENAI_PCM_RATE_HZ}
    last = chunks[-1]
    assert last.pcm == b"" and last.text == "Hello there." and last.usage is not None
    assert (last.usage.characters, last.usage.audio_s) == (12, pytest.approx(0.6))
    [request] = fake.requests
    assert (request.path, request.headers["authorization"]) == ("/v1/audio/speech", "Bearer sk")
    assert request.body == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there.",
        "voice": "coral",
        "response_format": "pcm",
        "instructions": "Warm.",
    }


async def test_speech_keeps_the_tts_contract():
    async with run_fake_openai(FakeOpenAI(chunk_delay_s=0.001)) as base_url:
        tts = OpenAITTS(base_url=base_url)
        await check_tts(lambda: tts, timeout_s=10)
        await tts.aclose()


@pytest.mark.parametrize(
    ("fake", "error_type", "error_class", "status"),
    [
        (FakeOpenAI(status=401), ProviderError, ErrorClass.PERMANENT, 401),
        (FakeOpenAI(status=429), ProviderError, ErrorClass.TRANSIENT, 429),
        (FakeOpenAI(status=500), ProviderError, ErrorClass.TRANSIENT, 500),
        (FakeOpenAI(drop_after_chunks=1), ProviderError, ErrorClass.TRANSIENT, None),
        (FakeOpenAI(hang=True), ProviderTimeout, ErrorClass.TIMEOUT, None),
    ],
    ids=["401", "429", "500", "dropped", "hang"],
)
async def test_speech_failures_are_classified(fake, error_type, error_class, status):
    async with run_fake_openai(fake) as base_url:
        tts = OpenAITTS(base_url=base_url, timeout_s=0.1)
        with pytest.raises(error_type) as caught:
            [c async for c in tts.synthesize("Hello.")]
        await tts.aclose()
    assert (caught.value.error_class, caught.value.status) == (error_class, status)


async def test_speech_aclose_mid_stream_closes_the_connection():
    fake = FakeOpenAI(stall_after_chunks=2)
    async with run_fake_openai(fake) as base_url:
        tts = OpenAITTS(base_url=base_url)
        stream = tts.synthesize("A long enough sentence to need several pieces.")
        assert len((await anext(stream)).pcm) > 0
        await stream.aclose()
        await fake.wait_disconnect()
        await tts.aclose()
    assert fake.disconnects == 1
