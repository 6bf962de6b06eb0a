"""CartesiaTTS against the fake Cartesia server over a real socket."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import TTSChunk
from voicerail.providers.cartesia import CARTESIA_VERSION, CartesiaTTS
from voicerail.testing.conformance import check_tts
from voicerail.testing.fake_servers._common import tone_pcm
from voicerail.testing.fake_servers.cartesia import FakeCartesia, run_fake_cartesia

TEXT = "Your appointment is on Tuesday."


async def synthesize(tts: CartesiaTTS, text: str = TEXT) -> list[TTSChunk]:
    return [c async for c in tts.synthesize(text)]


async def test_streams_pcm_then_text_and_usage_and_sends_the_documented_request():
    fake = FakeCartesia(api_key="sk_car", seconds_per_char=0.05, chunk_s=0.25)
    async with run_fake_cartesia(fake) as url:
        tts = CartesiaTTS("voice-9", api_key="sk_car", base_url=url, sample_rate_hz=8000)
        chunks = await synthesize(tts)
    assert b"".join(c.pcm for c in chunks) == tone_pcm(len(TEXT) * 0.05, 8000)
    assert len(chunks) == 8 and {c.sample_rate_hz for c in chunks} == {8000}
    last = chunks[-1]
    assert (last.pcm, last.text) == (b"", TEXT) and last.usage is not None
    assert (last.usage.provider, last.usage.model) == ("cartesia", "sonic-2")
    assert (last.usage.characters, last.usage.audio_s) == (31, pytest.approx(1.55))
    [connection] = fake.connections
    assert (connection.path, connection.query) == ("/tts/websocket", {})
    assert connection.headers["authorization"] == "Bearer sk_car"
    assert connection.headers["cartesia-version"] == CARTESIA_VERSION == "2025-04-16"
    [request] = connection.json_received()
    context_id = request.pop("context_id")
    assert uuid.UUID(context_id)
    assert request == {
        "model_id": "sonic-2",
        "transcript": TEXT,
        "voice": {"mode": "id", "id": "voice-9"},
        "language": "en",
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        "continue": False,
    }


async def test_each_request_has_its_own_context():
    fake = FakeCartesia()
    async with run_fake_cartesia(fake) as url:
        tts = CartesiaTTS("v", api_key="k", base_url=url)
        await asyncio.gather(synthesize(tts, "One."), synthesize(tts, "Two."))
    ids = {c.json_received()[0]["context_id"] for c in fake.connections}
    assert len(ids) == 2


async def test_cartesia_keeps_the_tts_contract():
    async with run_fake_cartesia(FakeCartesia(chunk_delay_s=0.001)) as url:
        await check_tts(lambda: CartesiaTTS("v", api_key="k", base_url=url), timeout_s=5)


def test_an_unsupported_rate_is_refused():
    with pytest.raises(ValueError, match="got 11025"):
        CartesiaTTS("v", api_key="k", sample_rate_hz=11025)


@pytest.mark.parametrize(
    ("fake", "error_class", "status"),
    [
        (FakeCartesia(reject_status=401), ErrorClass.PERMANENT, 401),
        (FakeCartesia(api_key="right"), ErrorClass.PERMANENT, 401),
        (FakeCartesia(reject_status=400), ErrorClass.PERMANENT, 400),
        (FakeCartesia(reject_status=429), ErrorClass.TRANSIENT, 429),
        (FakeCartesia(reject_status=500), ErrorClass.TRANSIENT, 500),
        (FakeCartesia(error_status=400), ErrorClass.PERMANENT, 400),
        (FakeCartesia(error_status=503), ErrorClass.TRANSIENT, 503),
        (FakeCartesia(close_code=1011), ErrorClass.TRANSIENT, 1011),
        (FakeCartesia(close_code=1006), ErrorClass.TRANSIENT, 1006),
    ],
    ids=["401", "bad-key", "400", "429", "500", "err-400", "err-503", "close-1011", "dropped"],
)
async def test_failures_are_classified(fake, error_class, status):
    async with run_fake_cartesia(fake) as url:
        with pytest.raises(ProviderError) as caught:
            await synthesize(CartesiaTTS("v", api_key="wrong", base_url=url))
    assert (caught.value.error_class, caught.value.status) == (error_class, status)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("2024-11-13", "cartesia: error reply: fake failure"),
        ("2026-03-01", "cartesia: error reply: http_400: Generation failed: fake failure"),
    ],
)
async def test_error_replies_of_both_documented_shapes_are_read(version, message):
    async with run_fake_cartesia(FakeCartesia(error_status=400)) as url:
        with pytest.raises(ProviderError) as caught:
            await synthesize(CartesiaTTS("v", api_key="k", base_url=url, version=version))
    assert str(caught.value) == message


async def test_a_close_mid_stream_comes_after_the_audio_so_far():
    fake = FakeCartesia(close_code=1011, close_after_messages=2)
    received: list[TTSChunk] = []
    async with run_fake_cartesia(fake) as url:
        with pytest.raises(ProviderError, match="connection closed with code 1011") as caught:
            async for chunk in CartesiaTTS("v", api_key="k", base_url=url).synthesize(TEXT):
                received.append(chunk)
    assert len(received) == 2 and caught.value.retryable


async def test_no_first_audio_within_timeout_is_a_provider_timeout():
    async with run_fake_cartesia(FakeCartesia(hang=True)) as url:
        with pytest.raises(ProviderTimeout) as caught:
            await synthesize(CartesiaTTS("v", api_key="k", base_url=url, timeout_s=0.1))
    assert caught.value.deadline_s == 0.1


async def test_aclose_mid_stream_closes_the_socket():
    fake = FakeCartesia(chunk_delay_s=0.01)
    async with run_fake_cartesia(fake) as url:
        stream = CartesiaTTS("v", api_key="k", base_url=url).synthesize(TEXT * 4)
        assert len((await anext(stream)).pcm) > 0
        await stream.aclose()
        async with asyncio.timeout(1):
            await fake.connections[0].closed.wait()
    assert fake.connections[0].close_code == 1000
