"""DeepgramSTT against the fake Deepgram server over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import Transcript, Usage
from voicerail.providers.deepgram import DeepgramResults, DeepgramSTT
from voicerail.testing.conformance import check_stt
from voicerail.testing.fake_servers._common import tone_pcm
from voicerail.testing.fake_servers.deepgram import FakeDeepgram, run_fake_deepgram

RATE_HZ = 16000
FRAME_NUM_BYTES = 640  # 20 ms at 16 kHz


async def speech(num_frames: int = 8, *, silent: bool = False) -> AsyncIterator[bytes]:
    pcm = bytes(FRAME_NUM_BYTES * num_frames) if silent else tone_pcm(num_frames * 0.02, RATE_HZ)
    for offset in range(0, len(pcm), FRAME_NUM_BYTES):
        yield pcm[offset : offset + FRAME_NUM_BYTES]


async def transcribe(
    stt: DeepgramSTT, audio: AsyncIterator[bytes] | None = None
) -> list[Transcript]:
    return [t async for t in stt.transcribe(audio or speech(), sample_rate_hz=RATE_HZ)]


async def test_partials_then_one_final_with_usage_and_the_documented_request():
    fake = FakeDeepgram(transcript="book me for tuesday at three", words_per_final=3, api_key="dg")
    async with run_fake_deepgram(fake) as url:
        transcripts = await transcribe(DeepgramSTT(api_key="dg", base_url=url))
    assert [(t.text, t.is_final) for t in transcripts] == [
        ("book", False),
        ("book me", False),
        ("book me for", False),
        ("book me for tuesday", False),
        ("book me for tuesday at", False),
        ("book me for tuesday at three", False),
        ("book me for tuesday at three", True),
    ]
    final = transcripts[-1]
    assert final.confidence == pytest.approx(0.93)
    assert (final.start_s, final.end_s) == (0.0, pytest.approx(0.12))  # the last word's frame
    assert final.usage is not None
    assert (final.usage.provider, final.usage.model) == ("deepgram", "nova-3")
    assert final.usage.audio_s == pytest.approx(8 * 0.02)
    assert final.usage.model_version == "2025-01-15.12345"
    [connection] = fake.connections
    assert connection.path == "/v1/listen"
    assert connection.query == {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "language": "en",
    }
    assert connection.headers["authorization"] == "Token dg"
    assert b"".join(connection.binary_received()) == b"".join([c async for c in speech()])
    assert connection.json_received() == [{"type": "CloseStream"}]
    assert connection.close_code == 1000


async def test_endpointing_is_sent_when_configured():
    fake = FakeDeepgram()
    async with run_fake_deepgram(fake) as url:
        await transcribe(DeepgramSTT("nova-2", api_key="k", base_url=url, endpointing_ms=300))
    query = fake.connections[0].query
    assert (query["endpointing"], query["model"]) == ("300", "nova-2")


async def test_silence_gives_one_empty_final():
    async with run_fake_deepgram(FakeDeepgram()) as url:
        transcripts = await transcribe(DeepgramSTT(api_key="k", base_url=url), speech(silent=True))
    [final] = transcripts
    assert (final.text, final.is_final, final.confidence) == ("", True, None)
    assert final.usage is not None and final.usage.audio_s == pytest.approx(0.16)


async def test_deepgram_keeps_the_stt_contract():
    async with run_fake_deepgram(FakeDeepgram(transcript="tuesday at three")) as url:
        await check_stt(
            lambda: DeepgramSTT(api_key="k", base_url=url),
            audio_pcm=tone_pcm(0.5, RATE_HZ),
            sample_rate_hz=RATE_HZ,
            expected_words=["tuesday", "three"],
            timeout_s=5,
        )


async def test_an_unsupported_rate_is_refused_before_connecting():
    fake = FakeDeepgram()
    async with run_fake_deepgram(fake) as url:
        stt = DeepgramSTT(api_key="k", base_url=url)
        with pytest.raises(ValueError, match="11025 Hz is not supported"):
            [t async for t in stt.transcribe(speech(), sample_rate_hz=11025)]
    assert fake.connections == []


@pytest.mark.parametrize(
    ("fake", "error_class", "status"),
    [
        (FakeDeepgram(reject_status=401), ErrorClass.PERMANENT, 401),
        (FakeDeepgram(api_key="right"), ErrorClass.PERMANENT, 401),
        (FakeDeepgram(reject_status=400), ErrorClass.PERMANENT, 400),
        (FakeDeepgram(reject_status=429), ErrorClass.TRANSIENT, 429),
        (FakeDeepgram(reject_status=503), ErrorClass.TRANSIENT, 503),
        (FakeDeepgram(close_code=1011, close_reason="NET-0000"), ErrorClass.TRANSIENT, 1011),
        (FakeDeepgram(close_code=1008, close_reason="DATA-0000"), ErrorClass.PERMANENT, 1008),
        (FakeDeepgram(close_code=1006), ErrorClass.TRANSIENT, 1006),
    ],
    ids=["401", "wrong-key", "400", "429", "503", "close-1011", "close-1008", "dropped"],
)
async def test_failures_are_classified(fake, error_class, status):
    async with run_fake_deepgram(fake) as url:
        with pytest.raises(ProviderError) as caught:
            await transcribe(DeepgramSTT(api_key="wrong", base_url=url))
    assert (caught.value.error_class, caught.value.status) == (error_class, status)
    assert caught.value.provider == "deepgram"


async def test_a_refused_handshake_says_why_from_the_dg_error_header():
    async with run_fake_deepgram(FakeDeepgram(api_key="right")) as url:
        with pytest.raises(ProviderError) as caught:
            await transcribe(DeepgramSTT(api_key="wrong", base_url=url))
    assert str(caught.value) == "deepgram: handshake rejected with http 401: invalid credentials"


async def test_a_close_mid_stream_names_its_code_and_reason():
    fake = FakeDeepgram(close_code=1011, close_reason="NET-0000", close_after_messages=2)
    received: list[Transcript] = []
    async with run_fake_deepgram(fake) as url:
        with pytest.raises(ProviderError) as caught:
            async for transcript in DeepgramSTT(api_key="k", base_url=url).transcribe(
                speech(), sample_rate_hz=RATE_HZ
            ):
                received.append(transcript)
    assert str(caught.value) == "deepgram: connection closed with code 1011 (NET-0000)"
    assert [t.text for t in received] == ["book", "book me"]


async def test_silence_from_deepgram_after_the_audio_is_a_timeout():
    fake = FakeDeepgram(hang=True)
    async with run_fake_deepgram(fake) as url:
        with pytest.raises(ProviderTimeout) as caught:
            await transcribe(DeepgramSTT(api_key="k", base_url=url, timeout_s=0.1))
    assert caught.value.deadline_s == 0.1
    assert fake.connections[0].json_received() == [{"type": "CloseStream"}]


async def test_no_deadline_while_the_audio_still_flows():
    """A slow caller does not time out: the deadline starts when the audio ends."""

    async def slow_speech() -> AsyncIterator[bytes]:
        async for frame in speech(4):
            await asyncio.sleep(0.03)
            yield frame

    async with run_fake_deepgram(FakeDeepgram(hang=True)) as url:
        stt = DeepgramSTT(api_key="k", base_url=url, timeout_s=0.05)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderTimeout):
            await transcribe(stt, slow_speech())
        elapsed_s = asyncio.get_running_loop().time() - started
    assert elapsed_s >= 4 * 0.03 + 0.05


async def test_aclose_mid_stream_closes_the_socket_and_the_audio():
    audio_closed = asyncio.Event()

    async def endless_speech() -> AsyncIterator[bytes]:
        try:
            while True:
                async for frame in speech(1):
                    yield frame
                await asyncio.sleep(0.005)
        finally:
            audio_closed.set()

    fake = FakeDeepgram()
    async with run_fake_deepgram(fake) as url:
        stream = DeepgramSTT(api_key="k", base_url=url).transcribe(
            endless_speech(), sample_rate_hz=RATE_HZ
        )
        assert (await anext(stream)).text == "book"
        await stream.aclose()
        async with asyncio.timeout(1):
            await fake.connections[0].closed.wait()
    assert audio_closed.is_set()
    assert fake.connections[0].close_code == 1000


async def test_an_audio_source_failure_is_raised_unchanged():
    async def broken_speech() -> AsyncIterator[bytes]:
        async for frame in speech(2):
            yield frame
        raise OSError("microphone unplugged")

    fake = FakeDeepgram()
    async with run_fake_deepgram(fake) as url:
        with pytest.raises(OSError, match="microphone unplugged"):
            await transcribe(DeepgramSTT(api_key="k", base_url=url), broken_speech())
        async with asyncio.timeout(1):
            await fake.connections[0].closed.wait()


async def test_no_handshake_within_open_timeout_is_a_provider_timeout():
    served = asyncio.Event()

    async def accept_and_ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()
        await writer.wait_closed()
        served.set()

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        stt = DeepgramSTT(api_key="k", base_url=f"ws://127.0.0.1:{port}", open_timeout_s=0.1)
        with pytest.raises(ProviderTimeout, match=r"no handshake within 0\.1 s"):
            await transcribe(stt)
        async with asyncio.timeout(1):
            await served.wait()


async def test_connection_refused_is_transient():
    async with run_fake_deepgram(FakeDeepgram()) as url:
        pass  # the port is free again
    with pytest.raises(ProviderError, match="cannot connect") as caught:
        await transcribe(DeepgramSTT(api_key="k", base_url=url))
    assert caught.value.error_class is ErrorClass.TRANSIENT


# --- the pure assembler ---------------------------------------------------------------


def results(text: str, *, is_final: bool, start: float = 0.0) -> dict:
    alternative = {"transcript": text, "confidence": 0.8}
    return {
        "type": "Results",
        "is_final": is_final,
        "start": start,
        "duration": 1.0,
        "channel": {"alternatives": [alternative]},
    }


def test_interim_results_extend_the_committed_finals():
    assembler = DeepgramResults("deepgram")
    seen = [
        assembler.receive_message(results("book me", is_final=True)),
        assembler.receive_message(results("for", is_final=False, start=1.0)),
        assembler.receive_message(results("for", is_final=False, start=1.0)),
        assembler.receive_message({"type": "UtteranceEnd"}),
        assembler.receive_message(results("for tuesday", is_final=True, start=1.0)),
    ]
    assert [t.text if t else None for t in seen] == [
        "book me",
        "book me for",
        None,  # nothing new
        None,
        "book me for tuesday",
    ]
    final = assembler.final(Usage("deepgram", "nova-3"))
    assert (final.text, final.start_s, final.end_s) == ("book me for tuesday", 0.0, 2.0)


def test_metadata_gives_the_model_version_and_errors_raise():
    assembler = DeepgramResults("deepgram")
    info = {"uuid-1": {"name": "general-nova-3", "version": "2026-01-01.1", "arch": "nova-3"}}
    assembler.receive_message({"type": "Metadata", "model_info": info})
    assert assembler.model_version == "2026-01-01.1"
    with pytest.raises(ProviderError, match="error message: overloaded") as caught:
        assembler.receive_message({"type": "Error", "description": "overloaded"})
    assert caught.value.retryable
    with pytest.raises(ProviderError, match="without alternatives"):
        assembler.receive_message({"type": "Results", "channel": {"alternatives": []}})


def test_metadata_without_a_version_falls_back_to_the_model_uuid():
    assembler = DeepgramResults("deepgram")
    assembler.receive_message({"type": "Metadata", "model_info": {"uuid-2": {"name": "custom"}}})
    assert assembler.model_version == "uuid-2"
    assembler = DeepgramResults("deepgram")
    assembler.receive_message({"type": "Metadata", "models": ["uuid-3"]})
    assert assembler.model_version == "uuid-3"
