"""The conformance kits pass correct fakes and catch each kind of broken one."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterable, AsyncIterator

import pytest

from voicerail.providers.base import STTCapabilities, Transcript, TTSCapabilities, TTSChunk, Usage
from voicerail.testing.conformance import check_stt, check_tts

RATE_HZ = 16000
SPEECH_PCM = struct.pack(
    f"<{RATE_HZ}h", *(int(8000 * math.sin(i / 5)) for i in range(RATE_HZ))
)  # one second of tone standing in for speech


class FakeSTT:
    """Hears ``words`` in any audio that is not silence."""

    name = "fake-stt"
    model = "fake"
    capabilities = STTCapabilities(sample_rates_hz=(RATE_HZ,))

    def __init__(self, words: str = "book an appointment") -> None:
        self.words = words

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(f"unsupported rate {sample_rate_hz}")
        pcm = b"".join([chunk async for chunk in audio])
        audio_s = len(pcm) / 2 / sample_rate_hz
        text = self.words if any(pcm) else ""
        usage = Usage(provider=self.name, model=self.model, audio_s=audio_s)
        yield Transcript(text=text, is_final=True, confidence=0.9, end_s=audio_s, usage=usage)


class NoUsageSTT(FakeSTT):
    async def transcribe(self, audio, *, sample_rate_hz, language="en"):
        async for transcript in super().transcribe(audio, sample_rate_hz=sample_rate_hz):
            yield Transcript(text=transcript.text, is_final=True)


class PartialLastSTT(FakeSTT):
    async def transcribe(self, audio, *, sample_rate_hz, language="en"):
        async for transcript in super().transcribe(audio, sample_rate_hz=sample_rate_hz):
            yield transcript
        yield Transcript(text="and", is_final=False)


class AnyRateSTT(FakeSTT):
    capabilities = STTCapabilities(sample_rates_hz=(RATE_HZ,))

    async def transcribe(self, audio, *, sample_rate_hz, language="en"):
        async for transcript in super().transcribe(audio, sample_rate_hz=RATE_HZ):
            yield transcript


class SwallowingSTT(FakeSTT):
    async def transcribe(self, audio, *, sample_rate_hz, language="en"):
        try:
            async for transcript in super().transcribe(audio, sample_rate_hz=sample_rate_hz):
                yield transcript
        except asyncio.CancelledError:
            yield Transcript(text="", is_final=True)


class FakeTTS:
    """Speaks a tone, one chunk per word, as a streaming provider would."""

    name = "fake-tts"
    model = "tone"
    capabilities = TTSCapabilities(sample_rate_hz=8000)
    chunk_rate_hz = 8000

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        words = text.split()
        num_samples = 0
        for index, _word in enumerate(words):
            await asyncio.sleep(0.001)
            pcm = struct.pack("<800h", *(int(9000 * math.sin(i / 3)) for i in range(800)))
            num_samples += 800
            if index < len(words) - 1:
                yield TTSChunk(pcm=pcm, sample_rate_hz=self.chunk_rate_hz)
            else:
                usage = Usage(
                    self.name, self.model, audio_s=num_samples / 8000, characters=len(text)
                )
                yield TTSChunk(pcm, self.chunk_rate_hz, text=text, usage=usage)


class WrongRateTTS(FakeTTS):
    chunk_rate_hz = 16000


class UsageOnEveryChunkTTS(FakeTTS):
    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        async for chunk in super().synthesize(text):
            usage = Usage(self.name, self.model, audio_s=0.1, characters=1)
            yield TTSChunk(chunk.pcm, chunk.sample_rate_hz, chunk.text, usage)


class SilentTTS(FakeTTS):
    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        async for chunk in super().synthesize(text):
            yield TTSChunk(bytes(len(chunk.pcm)), chunk.sample_rate_hz, chunk.text, chunk.usage)


class SwallowingTTS(FakeTTS):
    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        try:
            async for chunk in super().synthesize(text):
                yield chunk
        except asyncio.CancelledError:
            return


class HangingCloseTTS(FakeTTS):
    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        finished = False
        try:
            async for chunk in super().synthesize(text):
                yield chunk
            finished = True
        finally:
            if not finished:
                await asyncio.sleep(3600)  # stopped early: never releases


async def test_correct_fake_stt_passes() -> None:
    await check_stt(
        FakeSTT, audio_pcm=SPEECH_PCM, sample_rate_hz=RATE_HZ, expected_words=["appointment"]
    )


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (lambda: FakeSTT("book a table"), r"lacks words \['appointment'\]"),
        (NoUsageSTT, "the last final transcript has no usage"),
        (PartialLastSTT, "partial transcripts, but capabilities.partials is False"),
        (AnyRateSTT, "unsupported 7919 Hz did not raise ValueError"),
        (SwallowingSTT, "a cancellation was swallowed"),
    ],
)
async def test_broken_stt_fails_with_a_clear_message(fake, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        await check_stt(
            fake, audio_pcm=SPEECH_PCM, sample_rate_hz=RATE_HZ, expected_words=["appointment"]
        )


async def test_stt_test_audio_at_an_undeclared_rate_is_reported() -> None:
    with pytest.raises(AssertionError, match=r"test audio is 8000 Hz, provider accepts \(16000,\)"):
        await check_stt(FakeSTT, audio_pcm=SPEECH_PCM, sample_rate_hz=8000, expected_words=[])


async def test_correct_fake_tts_passes() -> None:
    await check_tts(FakeTTS)


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (WrongRateTTS, "chunk 0 is 16000 Hz, capabilities say 8000 Hz"),
        (UsageOnEveryChunkTTS, "carries usage; only the last may"),
        (SilentTTS, "audio is silent"),
        (SwallowingTTS, "a cancellation was swallowed"),
        (HangingCloseTTS, r"aclose\(\) mid-stream did not finish within 0.5 s"),
    ],
)
async def test_broken_tts_fails_with_a_clear_message(fake, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        await check_tts(fake, timeout_s=0.5)


async def test_object_without_the_interface_is_reported() -> None:
    with pytest.raises(AssertionError, match="does not implement TextToSpeech"):
        await check_tts(object)  # type: ignore[arg-type]
