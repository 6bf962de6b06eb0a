"""The routed providers: STT, TTS and LLM interfaces over provider chains.

Rule 3 of :mod:`voicerail.routing.router` (replay the in-flight request on
the next provider) and rule 5 (cancellation is not a failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from voicerail.audio.resample import StreamResampler
from voicerail.errors import ProviderError
from voicerail.events.model import Stage
from voicerail.providers.base import (
    ChatMessage,
    LanguageModel,
    LLMDelta,
    SpeechToText,
    TextToSpeech,
    ToolSpec,
    Transcript,
    TTSChunk,
)
from voicerail.routing.attempts import CallScope, abandon, error_class_of

# Absorbs float error when audio seconds are turned into words (4 x 0.4 s x 2.5 w/s).
_WORD_EPSILON = 1e-6


class RoutedTTS:
    """A :class:`TextToSpeech` over the TTS chain (rule 3: continue from the unspoken words)."""

    def __init__(self, scope: CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.TTS][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text`` along the chain; see :meth:`TextToSpeech.synthesize`.

        After a failover, audio at another sample rate is resampled to the rate
        of the request's first chunk (consumers build one resampler per
        request), and the words delivered by estimate only are named on the
        next chunk that carries text, so chunk texts still add up to ``text``.

        Raises:
            ProviderUnavailable: no provider could finish the sentence.
        """
        scope = self._scope
        words = text.split()
        delivered = 0
        unnamed: list[str] = []  # delivered by audio estimate, not yet named in a chunk text
        rate = _OneRate()
        excluded: list[str] = []
        number = 1
        reason: str | None = None
        while delivered < len(words) or number == 1:
            remainder = " ".join(words[delivered:])

            def speak(provider: TextToSpeech, text: str = remainder) -> AsyncIterator[TTSChunk]:
                return provider.synthesize(text)

            attempt, chunk = await scope.open(
                Stage.TTS, speak, exclude=excluded, first_number=number, reason=reason
            )
            number = attempt.number + 1
            counter = _WordCounter(self._words_per_second(attempt.provider))
            rate.restart()
            try:
                while chunk is not None:
                    scope.observe_usage(Stage.TTS, attempt, chunk.usage)
                    counter.delivered(chunk)
                    ready = rate.convert(chunk)
                    if ready is not None:
                        yield _named(ready, unnamed)
                    try:
                        chunk = await scope.next_item(Stage.TTS, attempt)
                    except StopAsyncIteration:
                        chunk = None
            except (ProviderError, TimeoutError) as error:
                spoken = min(counter.words(), len(words) - delivered)
                unnamed.extend(words[delivered + counter.named : delivered + spoken])
                delivered += spoken
                excluded.append(attempt.provider.name)
                reason = str(error_class_of(error))
                await abandon(attempt)
                scope.record(Stage.TTS, attempt, "error", error)
                held = rate.finish()
                if held is not None:
                    yield _named(held, unnamed)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await abandon(attempt)
                scope.record(Stage.TTS, attempt, "cancelled", None)
                raise
            scope.record(Stage.TTS, attempt, "ok", None)
            held = rate.finish()
            if held is not None:
                yield _named(held, unnamed)
            return

    def _words_per_second(self, provider: Any) -> float:
        nominal = getattr(provider, "words_per_second", None)
        if isinstance(nominal, int | float) and nominal > 0:
            return float(nominal)
        return self._scope.router.config_for(Stage.TTS).words_per_second


class _WordCounter:
    """Words one TTS attempt has delivered (rule 3): chunk texts, then audio estimate."""

    def __init__(self, words_per_second: float) -> None:
        self.words_per_second = words_per_second
        self.named = 0
        self._audio_s_since_text = 0.0

    def delivered(self, chunk: TTSChunk) -> None:
        """Count one chunk received from the provider (and passed on)."""
        if chunk.text:
            self.named += len(chunk.text.split())
            self._audio_s_since_text = 0.0
        elif chunk.sample_rate_hz > 0:
            self._audio_s_since_text += len(chunk.pcm) / 2 / chunk.sample_rate_hz

    def words(self) -> int:
        """Words delivered: named by chunk texts, plus the audio estimate rounded down."""
        estimated = self._audio_s_since_text * self.words_per_second + _WORD_EPSILON
        return self.named + int(estimated)


def _named(chunk: TTSChunk, unnamed: list[str]) -> TTSChunk:
    """Name the words delivered by estimate on the next chunk that carries text."""
    if not chunk.text or not unnamed:
        return chunk
    text = " ".join([*unnamed, chunk.text])
    unnamed.clear()
    return replace(chunk, text=text)


class _OneRate:
    """Keeps one TTS request at the sample rate of its first chunk.

    A provider at another rate is resampled; its chunks are then held back by
    one, so that the resampler's tail joins the last chunk (which carries the
    text and usage) instead of following it.
    """

    def __init__(self) -> None:
        self.rate_hz: int | None = None
        self._resampler: StreamResampler | None = None
        self._held: TTSChunk | None = None

    def restart(self) -> None:
        """A new attempt begins (its rate is seen on its first chunk)."""
        self._resampler = None
        self._held = None

    def convert(self, chunk: TTSChunk) -> TTSChunk | None:
        """The chunk to pass on now, at the request's rate (None while held back)."""
        if self.rate_hz is None:
            self.rate_hz = chunk.sample_rate_hz
        if chunk.sample_rate_hz == self.rate_hz:
            return chunk
        if self._resampler is None:
            self._resampler = StreamResampler(chunk.sample_rate_hz, self.rate_hz)
        pcm = self._resampler.process(chunk.pcm)
        ready, self._held = self._held, replace(chunk, pcm=pcm, sample_rate_hz=self.rate_hz)
        return ready

    def finish(self) -> TTSChunk | None:
        """The held chunk with the resampler's tail, when the attempt ends."""
        held, self._held = self._held, None
        if held is None or self._resampler is None:
            return held
        return replace(held, pcm=held.pcm + self._resampler.flush())


class RoutedSTT:
    """A :class:`SpeechToText` over the STT chain (rule 3: replay the buffered utterance)."""

    def __init__(self, scope: CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.STT][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """Transcribe along the chain; see :meth:`SpeechToText.transcribe`.

        The whole utterance is read before the first attempt, so that every
        attempt's first-byte deadline starts when the audio has ended and a
        replay never lacks audio (the driver hands over complete utterances).

        Raises:
            ProviderUnavailable: no provider could transcribe the utterance.
        """
        scope = self._scope
        buffered = [chunk async for chunk in audio]

        def replay(provider: SpeechToText) -> AsyncIterator[Transcript]:
            return provider.transcribe(
                _replay(buffered), sample_rate_hz=sample_rate_hz, language=language
            )

        excluded: list[str] = []
        number = 1
        reason: str | None = None
        while True:
            attempt, item = await scope.open(
                Stage.STT, replay, exclude=excluded, first_number=number, reason=reason
            )
            number = attempt.number + 1
            finals: list[Transcript] = []
            try:
                while item is not None:
                    scope.observe_usage(Stage.STT, attempt, item.usage)
                    if item.is_final:
                        finals.append(item)
                    else:
                        yield item
                    try:
                        item = await scope.next_item(Stage.STT, attempt)
                    except StopAsyncIteration:
                        item = None
            except (ProviderError, TimeoutError) as error:
                excluded.append(attempt.provider.name)
                reason = str(error_class_of(error))
                await abandon(attempt)
                scope.record(Stage.STT, attempt, "error", error)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await abandon(attempt)
                scope.record(Stage.STT, attempt, "cancelled", None)
                raise
            scope.record(Stage.STT, attempt, "ok", None)
            for transcript in finals:
                yield transcript
            return


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class RoutedLLM:
    """A :class:`LanguageModel` over the LLM chain (rule 3: restart or continue)."""

    def __init__(self, scope: CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.LLM][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """Chat along the chain; see :meth:`LanguageModel.chat`.

        Raises:
            ProviderUnavailable: no provider could finish the reply.
        """
        scope = self._scope
        partial = ""
        excluded: list[str] = []
        number = 1
        reason: str | None = None
        while True:
            request = list(messages)
            if partial:
                request.append(ChatMessage("assistant", partial))

            def ask(
                provider: LanguageModel, request: list[ChatMessage] = request
            ) -> AsyncIterator[LLMDelta]:
                return provider.chat(request, tools=tools)

            attempt, delta = await scope.open(
                Stage.LLM, ask, exclude=excluded, first_number=number, reason=reason
            )
            number = attempt.number + 1
            try:
                while delta is not None:
                    scope.observe_usage(Stage.LLM, attempt, delta.usage)
                    yield delta
                    partial += delta.text
                    try:
                        delta = await scope.next_item(Stage.LLM, attempt)
                    except StopAsyncIteration:
                        delta = None
            except (ProviderError, TimeoutError) as error:
                excluded.append(attempt.provider.name)
                reason = str(error_class_of(error))
                await abandon(attempt)
                scope.record(Stage.LLM, attempt, "error", error)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await abandon(attempt)
                scope.record(Stage.LLM, attempt, "cancelled", None)
                raise
            scope.record(Stage.LLM, attempt, "ok", None)
            return
