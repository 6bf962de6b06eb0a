"""Fault injection: wrap any provider, or use a synthetic one, and make it misbehave.

Used by tests, benchmarks and ``voicerail serve --faults FILE``. A fault file
maps provider names to profiles::

    piper:                      # wraps the real provider named "piper"
      hang_rate: 1.0            # never answer (0..1 per request)
    faster-whisper:
      error_rates: {"503": 0.3, "429": 0.1, "timeout": 0.05}
      first_byte_delay: {kind: lognormal, median_s: 0.2, sigma: 0.5}
      drop_rate: 0.2            # fail mid-stream ...
      drop_after_chunks: 2      # ... after this many chunks
    deepgram:
      model_version: "2026-11-01"

Every random draw comes from one ``random.Random(seed)`` per wrapped provider,
so a run is reproducible. ``sleep`` is injectable so tests can use a fake clock.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from voicerail.errors import ConfigError, ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import (
    ChatMessage,
    LLMCapabilities,
    LLMDelta,
    SpeechToText,
    STTCapabilities,
    TextToSpeech,
    ToolCall,
    ToolSpec,
    Transcript,
    TTSCapabilities,
    TTSChunk,
    Usage,
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Delay:
    """A latency distribution in seconds: ``fixed`` (value_s), ``uniform`` (low_s..high_s)
    or ``lognormal`` (median_s, sigma)."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value_s: float = 0.0
    low_s: float = 0.0
    high_s: float = 0.0
    median_s: float = 0.0
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        """One delay, seconds (never negative)."""
        if self.kind == "uniform":
            return rng.uniform(self.low_s, self.high_s)
        if self.kind == "lognormal":
            return self.median_s * math.exp(rng.gauss(0.0, self.sigma))
        return max(0.0, self.value_s)


@dataclass(frozen=True)
class FaultProfile:
    """How one provider misbehaves.

    Attributes:
        first_byte_delay: added before the first chunk.
        chunk_delay: added before every later chunk.
        error_rates: probability per request of failing before the first byte, by
            kind: an HTTP status (``"503"``, ``"429"``, ``"401"``, ``"400"``) or ``"timeout"``.
        hang_rate: probability per request of never answering.
        drop_rate: probability per request of failing mid-stream ...
        drop_after_chunks: ... after this many chunks were delivered.
        hang_after_chunks: when set, hang (instead of failing) after this many chunks.
        model_version: the model version the provider reports.
        seed: seed of the provider's random draws.
    """

    first_byte_delay: Delay = field(default_factory=Delay)
    chunk_delay: Delay = field(default_factory=Delay)
    error_rates: dict[str, float] = field(default_factory=dict)
    hang_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_chunks: int = 1
    hang_after_chunks: int | None = None
    model_version: str | None = None
    seed: int = 0


def _profile(name: str, raw: Any, source: str) -> FaultProfile:
    if not isinstance(raw, dict):
        raise ConfigError("a fault profile must be a mapping", source=source, field=name)
    known = set(FaultProfile.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown fault field {sorted(unknown)[0]!r}", source=source, field=name)
    values = dict(raw)
    try:
        for key in ("first_byte_delay", "chunk_delay"):
            if key in values:
                values[key] = Delay(**values[key])
        values["error_rates"] = {str(k): float(v) for k, v in values.get("error_rates", {}).items()}
        for kind in values["error_rates"]:
            if kind != "timeout" and not kind.isdigit():
                raise ValueError(f"error kind {kind!r} is neither a status nor 'timeout'")
        return FaultProfile(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).lower(), source=source, field=name) from exc


def load_faults(path: str | Path) -> dict[str, FaultProfile]:
    """Read a fault file (format in the module docstring).

    Raises:
        ConfigError: unreadable, not YAML, or with an unknown field or bad value.
    """
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read fault file: {exc}", source=source) from exc
    if not isinstance(raw, dict):
        raise ConfigError("a fault file maps provider names to profiles", source=source)
    return {str(name): _profile(str(name), spec, source) for name, spec in raw.items()}


class _Injector:
    """The per-provider random source and the faults it decides."""

    def __init__(self, name: str, profile: FaultProfile, sleep: Sleep) -> None:
        self.name = name
        self.profile = profile
        self.sleep = sleep
        self.rng = random.Random(profile.seed)
        self.requests = 0

    async def before_first_byte(self) -> None:
        """Raise, hang or wait as the profile says, before the first chunk."""
        self.requests += 1
        profile = self.profile
        for kind, rate in profile.error_rates.items():
            if self.rng.random() < rate:
                if kind == "timeout":
                    raise ProviderTimeout("injected timeout", provider=self.name, deadline_s=0.0)
                status = int(kind)
                error_class = ErrorClass.TRANSIENT
                if status in (400, 401, 403, 404):
                    error_class = ErrorClass.PERMANENT
                raise ProviderError(
                    f"injected http {status}",
                    provider=self.name,
                    status=status,
                    error_class=error_class,
                )
        if self.rng.random() < profile.hang_rate:
            await asyncio.Event().wait()  # never set: a hung provider
        await self.sleep(profile.first_byte_delay.draw(self.rng))

    def plan_drop(self) -> int | None:
        """Chunks after which this request fails mid-stream, or None."""
        if self.profile.hang_after_chunks is not None:
            return self.profile.hang_after_chunks
        if self.rng.random() < self.profile.drop_rate:
            return self.profile.drop_after_chunks
        return None

    async def between_chunks(self, delivered: int, drop_after: int | None) -> None:
        """Wait before the next chunk; fail or hang when the planned drop is reached."""
        if drop_after is not None and delivered >= drop_after:
            if self.profile.hang_after_chunks is not None:
                await asyncio.Event().wait()
            raise ProviderError(
                f"injected connection drop after {delivered} chunks", provider=self.name
            )
        if delivered:
            await self.sleep(self.profile.chunk_delay.draw(self.rng))


class FaultyTTS:
    """Wraps a :class:`TextToSpeech` and injects the faults of ``profile``."""

    def __init__(self, inner: TextToSpeech, profile: FaultProfile, sleep: Sleep = asyncio.sleep):
        self.inner = inner
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities
        self._faults = _Injector(inner.name, profile, sleep)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()
        delivered = 0
        stream = self.inner.synthesize(text)
        try:
            async for chunk in stream:
                await self._faults.between_chunks(delivered, drop_after)
                yield chunk
                delivered += 1
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


class FaultySTT:
    """Wraps a :class:`SpeechToText` and injects the faults of ``profile``."""

    def __init__(self, inner: SpeechToText, profile: FaultProfile, sleep: Sleep = asyncio.sleep):
        self.inner = inner
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities
        self._faults = _Injector(inner.name, profile, sleep)

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        chunks = [chunk async for chunk in audio]
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        delivered = 0
        stream = self.inner.transcribe(replay(), sample_rate_hz=sample_rate_hz, language=language)
        try:
            async for transcript in stream:
                await self._faults.between_chunks(delivered, drop_after)
                yield transcript
                delivered += 1
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


class FakeTTS:
    """A synthetic TTS: one chunk per word, its duration proportional to the word.

    Each chunk's ``text`` is its word, so what was delivered can be checked word by
    word. PCM is a quiet tone, s16le mono at ``sample_rate_hz``.
    """

    def __init__(
        self,
        name: str = "fake-tts",
        *,
        profile: FaultProfile | None = None,
        sample_rate_hz: int = 16000,
        seconds_per_word: float = 0.3,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name, self.model = name, f"{name}-model"
        self.capabilities = TTSCapabilities(sample_rate_hz=sample_rate_hz)
        self.seconds_per_word = seconds_per_word
        self._faults = _Injector(name, profile or FaultProfile(), sleep)
        self.requests: list[str] = []

    def _pcm(self, seconds: float) -> bytes:
        num_samples = int(seconds * self.capabilities.sample_rate_hz)
        return (b"\x10\x00\xf0\xff" * (num_samples // 2 + 1))[: num_samples * 2]

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        self.requests.append(text)
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()
        words = text.split()
        for index, word in enumerate(words):
            await self._faults.between_chunks(index, drop_after)
            last = index == len(words) - 1
            usage = None
            if last:
                usage = Usage(
                    self.name,
                    self.model,
                    self._faults.profile.model_version,
                    audio_s=len(words) * self.seconds_per_word,
                    characters=len(text),
                )
            yield TTSChunk(
                self._pcm(self.seconds_per_word), self.capabilities.sample_rate_hz, word, usage
            )


class FakeSTT:
    """A synthetic STT that returns ``transcript`` for any audio (partial, then final)."""

    def __init__(
        self,
        name: str = "fake-stt",
        *,
        transcript: str = "hello",
        profile: FaultProfile | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name, self.model = name, f"{name}-model"
        self.capabilities = STTCapabilities(sample_rates_hz=(8000, 16000), partials=True)
        self.transcript = transcript
        self._faults = _Injector(name, profile or FaultProfile(), sleep)
        self.received_num_bytes: list[int] = []

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(f"{self.name}: {sample_rate_hz} Hz is not supported")
        num_bytes = sum([len(chunk) async for chunk in audio])
        self.received_num_bytes.append(num_bytes)
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()
        words = self.transcript.split()
        await self._faults.between_chunks(0, drop_after)
        yield Transcript(" ".join(words[: max(1, len(words) // 2)]), is_final=False)
        await self._faults.between_chunks(1, drop_after)
        audio_s = num_bytes / 2 / sample_rate_hz
        usage = Usage(self.name, self.model, self._faults.profile.model_version, audio_s=audio_s)
        yield Transcript(self.transcript, is_final=True, confidence=0.9, usage=usage)


class FakeLLM:
    """A synthetic LLM that streams ``reply`` word by word, then ``tool_calls``."""

    def __init__(
        self,
        name: str = "fake-llm",
        *,
        reply: str = "Sure.",
        tool_calls: Sequence[ToolCall] = (),
        profile: FaultProfile | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name, self.model = name, f"{name}-model"
        self.capabilities = LLMCapabilities()
        self.reply, self.tool_calls = reply, tuple(tool_calls)
        self._faults = _Injector(name, profile or FaultProfile(), sleep)

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()
        words = self.reply.split()
        for index, word in enumerate(words):
            await self._faults.between_chunks(index, drop_after)
            yield LLMDelta(text=word if index == 0 else " " + word)
        for call in self.tool_calls:
            yield LLMDelta(tool_call=call)
        usage = Usage(
            self.name,
            self.model,
            self._faults.profile.model_version,
            input_tokens=sum(len(m.content.split()) for m in messages),
            output_tokens=len(words),
        )
        finish = "tool_calls" if self.tool_calls else "stop"
        yield LLMDelta(finish_reason=finish, usage=usage)


def with_faults(provider: Any, profiles: dict[str, FaultProfile]) -> Any:
    """Wrap ``provider`` when ``profiles`` has an entry for its name; else return it."""
    profile = profiles.get(provider.name)
    if profile is None:
        return provider
    if hasattr(provider, "synthesize"):
        return FaultyTTS(provider, profile)
    if hasattr(provider, "transcribe"):
        return FaultySTT(provider, profile)
    raise TypeError(f"cannot inject faults into {type(provider).__name__}")


__all__ = [
    "Delay",
    "FakeLLM",
    "FakeSTT",
    "FakeTTS",
    "FaultProfile",
    "FaultySTT",
    "FaultyTTS",
    "load_faults",
    "with_faults",
]
