"""One utterance to text, one sentence to audio: the two provider calls of a turn,
with no call state (the driver records what they return).

* :func:`transcribe`: 16 kHz PCM of one utterance through an STT; the final
  transcript, the compute time on the call's clock and the audio length.
* :func:`synthesize_ulaw`: one sentence as whole 20 ms μ-law frames, from the
  phrase cache when the sentence is fixed (``session/phrase_cache.py``), else
  from the TTS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from voicerail.clock import Clock
from voicerail.providers.base import SpeechToText, TextToSpeech, Transcript, closing_stream
from voicerail.session.phrase_cache import PhraseCache, ulaw_frames

STT_RATE_HZ = 16000


@dataclass(frozen=True)
class SpeechToTextResult:
    """One utterance's STT outcome.

    Attributes:
        final: the last final transcript, or None when the STT gave none.
        elapsed_s: compute time on the call's clock, seconds.
        audio_s: the utterance's audio length, seconds.
    """

    final: Transcript | None
    elapsed_s: float
    audio_s: float


async def transcribe(stt: SpeechToText, pcm16k: bytes, clock: Clock) -> SpeechToTextResult:
    """Transcribe one utterance.

    Args:
        stt: the call's STT (routed or not).
        pcm16k: signed 16-bit little-endian mono PCM at 16 kHz.
        clock: the call's clock.

    Raises:
        ProviderError: no STT answered (after the router's failover, if any).
    """

    async def audio() -> AsyncIterator[bytes]:
        yield pcm16k

    started = clock.monotonic()
    final = None
    transcripts = stt.transcribe(audio(), sample_rate_hz=STT_RATE_HZ)
    async with closing_stream(transcripts):
        async for transcript in transcripts:
            if transcript.is_final:
                final = transcript
    audio_s = len(pcm16k) / 2 / STT_RATE_HZ
    return SpeechToTextResult(final, clock.monotonic() - started, audio_s)


async def synthesize_ulaw(
    sentence: str, tts: TextToSpeech, phrases: PhraseCache | None
) -> AsyncIterator[bytes]:
    """Yield whole 20 ms μ-law 8 kHz frames (concatenated) for ``sentence``.

    Raises:
        ProviderError: no TTS could speak it.
    """
    cached = phrases.get(sentence) if phrases is not None else None
    if cached is not None:
        yield cached
        return
    async with closing_stream(ulaw_frames(tts.synthesize(sentence))) as frames:
        async for piece in frames:
            yield piece
