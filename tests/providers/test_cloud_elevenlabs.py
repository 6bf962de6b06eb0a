"""ElevenLabsTTS against the fake ElevenLabs server over a real socket."""

from __future__ import annotations

import asyncio

import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import TTSChunk
from voicerail.providers.elevenlabs import ElevenLabsTTS, error_from_message
from voicerail.testing.conformance import check_tts
from voicerail.testing.fake_servers._common import tone_pcm
from voicerail.testing.fake_servers.elevenlabs import FakeElevenLabs, run_fake_elevenlabs

TEXT = "Your appointment is on Tuesday."


async def synthesize(tts: ElevenLabsTTS, text: str = TEXT) -> list[TTSChunk]:
    return [c async for c in tts.synthesize(text)]


async def test_streams_pcm_then_text_and_usage_and_sends_the_documented_messages():
    fake = FakeElevenLabs(api_key="xi", seconds_per_char=0.05, chunk_s=0.25)
    async with run_fake_elevenlabs(fake) as url:
        tts = ElevenLabsTTS("voice-1", api_key="xi", base_url=url)
        chunks = await synthesize(tts)
    assert tts.capabilities.sample_rate_hz == 16000
    assert b"".join(c.pcm for c in chunks) == tone_pcm(len(TEXT) * 0.05, 16000)
    assert len(chunks) == 8  # 1.55 s in 0.25 s frames, then the closing chunk
    assert all(c.sample_rate_hz == 16000 and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert (last.pcm, last.text) == (b"", TEXT) and last.usage is not None
    assert (last.usage.provider, last.usage.model) == ("elevenlabs", "eleven_flash_v2_5")
    assert (last.usage.characters, last.usage.audio_s) == (31, pytest.approx(1.55))
    [connection] = fake.connections
    assert connection.path == "/v1/text-to-speech/voice-1/stream-input"
    assert connection.query == {"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000"}
    assert connection.headers["xi-api-key"] == "xi"
    assert connection.json_received() == [
        {
            "text": " ",
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.75},
            "xi_api_key": "xi",
        },
        {"text": TEXT + " ", "flush": True},
        {"text": ""},
    ]
    assert connection.close_code == 1000


async def test_output_format_sets_the_rate_and_must_be_pcm():
    fake = FakeElevenLabs()
    async with run_fake_elevenlabs(fake) as url:
        tts = ElevenLabsTTS("v", api_key="k", base_url=url, output_format="pcm_24000")
        chunks = await synthesize(tts, "Hi.")
    assert {c.sample_rate_hz for c in chunks} == {24000}
    assert chunks[-1].usage is not None and chunks[-1].usage.audio_s == pytest.approx(0.15)
    with pytest.raises(ValueError, match="output_format must be pcm_<rate>, got 'mp3_44100_128'"):
        ElevenLabsTTS("v", api_key="k", output_format="mp3_44100_128")


async def test_elevenlabs_keeps_the_tts_contract():
    async with run_fake_elevenlabs(FakeElevenLabs(chunk_delay_s=0.001)) as url:
        await check_tts(lambda: ElevenLabsTTS("v", api_key="k", base_url=url), timeout_s=5)


@pytest.mark.parametrize(
    ("fake", "error_class", "status"),
    [
        (FakeElevenLabs(reject_status=401), ErrorClass.PERMANENT, 401),
        (FakeElevenLabs(api_key="right"), ErrorClass.PERMANENT, 401),
        (FakeElevenLabs(reject_status=400), ErrorClass.PERMANENT, 400),
        (FakeElevenLabs(reject_status=429), ErrorClass.TRANSIENT, 429),
        (FakeElevenLabs(reject_status=503), ErrorClass.TRANSIENT, 503),
        (FakeElevenLabs(error="quota_exceeded"), ErrorClass.PERMANENT, 1008),
        (FakeElevenLabs(error="input_timeout_exceeded"), ErrorClass.TRANSIENT, 1008),
        (FakeElevenLabs(close_code=1011), ErrorClass.TRANSIENT, 1011),
        (FakeElevenLabs(close_code=1006), ErrorClass.TRANSIENT, 1006),
    ],
    ids=["401", "wrong-key", "400", "429", "503", "quota", "idle", "close-1011", "dropped"],
)
async def test_failures_are_classified(fake, error_class, status):
    async with run_fake_elevenlabs(fake) as url:
        with pytest.raises(ProviderError) as caught:
            await synthesize(ElevenLabsTTS("v", api_key="wrong", base_url=url))
    assert (caught.value.error_class, caught.value.status) == (error_class, status)


async def test_an_error_frame_names_the_error_code():
    async with run_fake_elevenlabs(FakeElevenLabs(error="quota_exceeded")) as url:
        with pytest.raises(ProviderError) as caught:
            await synthesize(ElevenLabsTTS("v", api_key="k", base_url=url))
    assert str(caught.value) == "elevenlabs: error quota_exceeded: fake failure"


async def test_a_close_mid_stream_comes_after_the_audio_so_far():
    fake = FakeElevenLabs(close_code=1011, close_after_messages=2)
    received: list[TTSChunk] = []
    async with run_fake_elevenlabs(fake) as url:
        with pytest.raises(ProviderError, match="connection closed with code 1011") as caught:
            async for chunk in ElevenLabsTTS("v", api_key="k", base_url=url).synthesize(TEXT):
                received.append(chunk)
    assert len(received) == 2 and caught.value.retryable


async def test_a_normal_close_before_is_final_is_transient():
    fake = FakeElevenLabs(close_code=1000, close_after_messages=1)
    async with run_fake_elevenlabs(fake) as url:
        with pytest.raises(ProviderError, match="connection closed before isFinal") as caught:
            await synthesize(ElevenLabsTTS("v", api_key="k", base_url=url))
    assert caught.value.error_class is ErrorClass.TRANSIENT


async def test_no_first_audio_within_timeout_is_a_provider_timeout():
    fake = FakeElevenLabs(hang=True)
    async with run_fake_elevenlabs(fake) as url:
        with pytest.raises(ProviderTimeout) as caught:
            await synthesize(ElevenLabsTTS("v", api_key="k", base_url=url, timeout_s=0.1))
    assert caught.value.deadline_s == 0.1
    assert len(fake.connections[0].received) == 3  # the request went out in full


async def test_aclose_mid_stream_closes_the_socket():
    fake = FakeElevenLabs(chunk_delay_s=0.01)
    async with run_fake_elevenlabs(fake) as url:
        stream = ElevenLabsTTS("v", api_key="k", base_url=url).synthesize(TEXT * 4)
        assert len((await anext(stream)).pcm) > 0
        await stream.aclose()
        async with asyncio.timeout(1):
            await fake.connections[0].closed.wait()
    assert fake.connections[0].close_code == 1000


def test_error_frames_without_a_known_code_use_their_close_code():
    error = error_from_message({"error": "internal", "message": "x", "code": 1011}, "elevenlabs")
    assert error is not None and error.error_class is ErrorClass.TRANSIENT
    error = error_from_message({"error": "odd", "code": 1007}, "elevenlabs")
    assert error is not None and error.error_class is ErrorClass.PERMANENT
    assert error_from_message({"audio": "AAAA", "isFinal": None}, "elevenlabs") is None
