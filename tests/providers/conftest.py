"""Embedded engines shared by the provider tests: each model loads once per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from voicerail.providers.base import SpeechToText, Transcript
from voicerail.providers.piper import PiperTTS
from voicerail.providers.whisper import FasterWhisperSTT


@pytest.fixture(scope="session")
def whisper_stt() -> FasterWhisperSTT:
    """faster-whisper tiny.en, loaded."""
    pytest.importorskip("faster_whisper")
    stt = FasterWhisperSTT()
    stt.preload()
    return stt


@pytest.fixture(scope="session")
def piper_tts() -> PiperTTS:
    """piper en_US-joe-medium, loaded."""
    pytest.importorskip("piper")
    tts = PiperTTS()
    tts.preload()
    return tts


TranscribePCM = Callable[[SpeechToText, bytes, int], Awaitable[Transcript]]


@pytest.fixture(scope="session")
def transcribe_pcm() -> TranscribePCM:
    """A function running one utterance through an STT and returning its last transcript."""

    async def run(stt: SpeechToText, pcm: bytes, sample_rate_hz: int) -> Transcript:
        async def frames() -> AsyncIterator[bytes]:
            num_bytes = 2 * sample_rate_hz // 50  # 20 ms frames
            for offset in range(0, len(pcm), num_bytes):
                yield pcm[offset : offset + num_bytes]

        transcripts = [t async for t in stt.transcribe(frames(), sample_rate_hz=sample_rate_hz)]
        return transcripts[-1]

    return run
