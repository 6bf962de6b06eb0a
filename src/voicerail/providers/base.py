"""The three provider interfaces: streaming STT, streaming LLM chat, streaming TTS.

One seam per kind (as ``httpx`` has ``handle_async_request``): everything else —
routing, failover, fault injection, fakes — is another implementation of the
same protocol. Capabilities are data, not subclasses.

Audio crossing these interfaces is always signed 16-bit little-endian mono PCM
("s16le") at the ``sample_rate_hz`` named beside it.

Failure and cancellation, for every method here:

* A provider failure raises :class:`voicerail.errors.ProviderError` (or
  :class:`~voicerail.errors.ProviderTimeout`) with an ``error_class``; never a
  bare library exception.
* Cancellation (the caller barged in) arrives as :class:`asyncio.CancelledError`
  in the consumer's task or as ``aclose()`` on the iterator; implementations
  release their resources and re-raise. It is not a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Use a provider stream and always ``aclose()`` it, even when left early.

    Leaving ``async for`` with ``break`` or an exception does not close an async
    generator until it is garbage-collected; a provider's worker thread or
    connection would keep running. Every consumer of these interfaces uses this.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(frozen=True)
class Usage:
    """What one provider request consumed; priced by the price table in configuration.

    Attributes:
        provider: configured provider name.
        model: model name as configured.
        model_version: the version the provider reported, when it reports one.
        audio_s: seconds of audio sent (STT) or produced (TTS).
        input_tokens: prompt tokens (LLM).
        output_tokens: completion tokens (LLM).
        characters: characters synthesized (TTS).
    """

    provider: str
    model: str
    model_version: str | None = None
    audio_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0


@dataclass(frozen=True)
class STTCapabilities:
    """What a speech-to-text provider can do.

    Attributes:
        sample_rates_hz: input rates accepted without resampling.
        streaming: True when transcripts may arrive before the audio ends.
        partials: True when non-final transcripts are produced.
        languages: BCP-47 codes supported.
    """

    sample_rates_hz: tuple[int, ...] = (16000,)
    streaming: bool = False
    partials: bool = False
    languages: tuple[str, ...] = ("en",)


@dataclass(frozen=True)
class Transcript:
    """A transcript of (part of) one utterance.

    Attributes:
        text: the words heard.
        is_final: False for partial hypotheses that may still change.
        confidence: 0..1 when the provider gives one.
        start_s: start within the utterance audio, seconds.
        end_s: end within the utterance audio, seconds.
        usage: set on the last final transcript of a stream.
    """

    text: str
    is_final: bool
    confidence: float | None = None
    start_s: float = 0.0
    end_s: float = 0.0
    usage: Usage | None = None


@runtime_checkable
class SpeechToText(Protocol):
    """Streaming speech-to-text.

    Attributes:
        name: configured provider name (used in events and routing).
        model: model name.
        capabilities: see :class:`STTCapabilities`.
    """

    name: str
    model: str
    capabilities: STTCapabilities

    def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """Transcribe one utterance.

        Args:
            audio: s16le mono PCM chunks at ``sample_rate_hz``; the iterable ends
                when the utterance ends (endpointing decided it).
            sample_rate_hz: one of ``capabilities.sample_rates_hz``.
            language: BCP-47 language code.

        Yields:
            Partial transcripts (if supported), then at least one final one. The
            last final transcript holds the whole utterance and carries ``usage``.
            An utterance with no words yields one final transcript with empty text.

        Raises:
            ProviderError: the provider failed; ``error_class`` says how.
            ValueError: ``sample_rate_hz`` is not supported.
        """
        ...


@dataclass(frozen=True)
class TTSChunk:
    """A piece of synthesized speech.

    Attributes:
        pcm: s16le mono PCM at ``sample_rate_hz``.
        sample_rate_hz: rate of ``pcm``.
        text: the text this chunk finishes speaking ("" when the chunk continues
            a longer piece of text whose last chunk carries it).
        usage: set on the last chunk of a request.
    """

    pcm: bytes
    sample_rate_hz: int
    text: str = ""
    usage: Usage | None = None


@dataclass(frozen=True)
class TTSCapabilities:
    """What a text-to-speech provider can do.

    Attributes:
        sample_rate_hz: rate of the audio it produces.
        streaming: True when first audio arrives before the whole text is synthesized.
        voices: available voice ids.
    """

    sample_rate_hz: int = 22050
    streaming: bool = True
    voices: tuple[str, ...] = ()


@runtime_checkable
class TextToSpeech(Protocol):
    """Streaming text-to-speech, one sentence (or short text) per request."""

    name: str
    model: str
    capabilities: TTSCapabilities

    def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``.

        Args:
            text: one sentence or short paragraph, already normalized.

        Yields:
            Audio chunks in order; the last one carries ``text`` and ``usage``.

        Raises:
            ProviderError: the provider failed; ``error_class`` says how.
        """
        ...


@dataclass(frozen=True)
class ToolSpec:
    """A function the LLM may call (OpenAI ``tools`` shape).

    Attributes:
        name: function name.
        description: what it does, for the model.
        parameters: JSON Schema of the arguments object.
        writes: True when calling it has a side effect (gets an idempotency key).
    """

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    writes: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A complete tool call requested by the LLM.

    Attributes:
        id: the provider's call id.
        name: function name.
        arguments: decoded JSON arguments.
    """

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat (OpenAI Chat Completions roles)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class LLMDelta:
    """One streamed piece of an LLM reply: text, a finished tool call, or the end.

    Attributes:
        text: new text tokens ("" when none).
        tool_call: a complete tool call, when one finished.
        finish_reason: set on the last delta (``"stop"``, ``"tool_calls"``, ``"length"``).
        usage: set on the last delta when the provider reports it.
    """

    text: str = ""
    tool_call: ToolCall | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class LLMCapabilities:
    """What an LLM provider can do."""

    tools: bool = True
    streaming: bool = True


@runtime_checkable
class LanguageModel(Protocol):
    """Streaming chat completion."""

    name: str
    model: str
    capabilities: LLMCapabilities

    def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """Stream a reply to ``messages``.

        Yields:
            Text deltas and complete tool calls; the last delta has ``finish_reason``.

        Raises:
            ProviderError: the provider failed; ``error_class`` says how.
        """
        ...
