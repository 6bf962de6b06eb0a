"""Fault injection: wrap any provider, or use a synthetic one, and make it misbehave.

(Over 500 lines: the fault file's schema, the one injector, and the three
wrappers and three synthetic providers that share it. The natural split is
the synthetic providers (``Fake*``) into their own module.)

Used by tests, benchmarks, the simulator and ``voicerail serve --faults FILE``
(through :func:`voicerail.providers.registry.ProviderRegistry.wrapped`);
``voicerail.testing.faults`` re-exports it for the test kit. A fault file
maps provider names to profiles::

    piper:                      # wraps the real provider named "piper"
      hang_rate: 1.0            # never answer (0..1 per request)
    faster-whisper:
      error_rates: {"503": 0.3, "429": 0.1, "timeout": 0.05}
      first_byte_delay: {kind: lognormal, median_s: 0.2, sigma: 0.5}
      drop_rate: 0.2            # fail mid-stream ...
      drop_after_chunks: 2      # ... after this many chunks
    deepgram:
      model_version: "2026-11-01"   # reported in Usage.model_version
      slow_rate: 0.1                # 10% of requests get an extra first-byte delay:
      slow_first_byte: {kind: uniform, low_s: 1.0, high_s: 3.0}
      chunk_delay: {value_s: 0.02}  # before every chunk after the first

Fields (all optional): ``first_byte_delay``, ``chunk_delay``, ``slow_first_byte``
are delays ``{kind: fixed|uniform|lognormal, value_s, low_s, high_s, median_s,
sigma}``; ``error_rates`` maps an HTTP status (``"503"``, ``"429"``, ``"401"``,
...) or ``"timeout"`` to a probability per request; ``hang_rate``, ``slow_rate``
and ``drop_rate`` are probabilities per request; ``drop_after_chunks`` and
``hang_after_chunks`` count chunks; ``model_version`` is a string; ``seed`` an int.

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
from typing import Any, Literal, TypeVar

import yaml

from voicerail.errors import ConfigError, ProviderError, ProviderTimeout, classify_http_status
from voicerail.providers.base import (
    ChatMessage,
    LanguageModel,
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
    closing_stream,
)

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


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

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "lognormal"):
            raise ValueError(f"unknown delay kind {self.kind!r}")

    def draw(self, rng: random.Random) -> float:
        """One delay, seconds (never negative); ``fixed`` draws nothing from ``rng``."""
        if self.kind == "uniform":
            return max(0.0, rng.uniform(self.low_s, self.high_s))
        if self.kind == "lognormal":
            return max(0.0, self.median_s * math.exp(rng.gauss(0.0, self.sigma)))
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
        slow_rate: probability per request of a slow first byte ...
        slow_first_byte: ... that adds this delay to ``first_byte_delay``.
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
    slow_rate: float = 0.0
    slow_first_byte: Delay = field(default_factory=Delay)
    drop_rate: float = 0.0
    drop_after_chunks: int = 1
    hang_after_chunks: int | None = None
    model_version: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        rates = {"hang_rate": self.hang_rate, "slow_rate": self.slow_rate}
        rates["drop_rate"] = self.drop_rate
        rates.update({f"error_rates.{k}": v for k, v in self.error_rates.items()})
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {rate}")
        for kind in self.error_rates:
            if kind != "timeout" and not kind.isdigit():
                raise ValueError(f"error kind {kind!r} is neither a status nor 'timeout'")

    @property
    def always_fails(self) -> bool:
        """True when every request errs or hangs before its first byte (probes fail)."""
        return self.hang_rate >= 1.0 or any(rate >= 1.0 for rate in self.error_rates.values())


def _profile(name: str, raw: Any, source: str) -> FaultProfile:
    if not isinstance(raw, dict):
        raise ConfigError("a fault profile must be a mapping", source=source, field=name)
    known = set(FaultProfile.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown fault field {sorted(unknown)[0]!r}", source=source, field=name)
    values = dict(raw)
    try:
        for key in ("first_byte_delay", "chunk_delay", "slow_first_byte"):
            if key in values:
                values[key] = Delay(**values[key])
        values["error_rates"] = {str(k): float(v) for k, v in values.get("error_rates", {}).items()}
        return FaultProfile(**values)
    except (TypeError, ValueError, AttributeError) as exc:
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
        self.probes = 0

    async def before_first_byte(self) -> None:
        """Raise, hang or wait as the profile says, before the first chunk."""
        self.requests += 1
        profile = self.profile
        for kind, rate in profile.error_rates.items():
            if self.rng.random() < rate:
                if kind == "timeout":
                    raise ProviderTimeout("injected timeout", provider=self.name, deadline_s=0.0)
                status = int(kind)
                raise ProviderError(
                    f"injected http {status}",
                    provider=self.name,
                    status=status,
                    error_class=classify_http_status(status),
                )
        if self.rng.random() < profile.hang_rate:
            await asyncio.Event().wait()  # never set: a hung provider
        delay_s = profile.first_byte_delay.draw(self.rng)
        # drawn only when enabled, so that a profile without it keeps its old draws
        if profile.slow_rate > 0 and self.rng.random() < profile.slow_rate:
            delay_s += profile.slow_first_byte.draw(self.rng)
        await self.sleep(delay_s)

    async def probe(self) -> None:
        """A health check that spends nothing: fails while the profile always fails.

        Raises:
            ProviderError: 503 while ``profile.always_fails``.
        """
        self.probes += 1
        if self.profile.always_fails:
            raise ProviderError("injected probe failure", provider=self.name, status=503)

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


class _Faulted:
    """What every faulty or fake provider shares: its profile and a free probe."""

    name: str
    _faults: _Injector

    @property
    def profile(self) -> FaultProfile:
        """The profile in force; assign a new one to change faults mid-test."""
        return self._faults.profile

    @profile.setter
    def profile(self, profile: FaultProfile) -> None:
        self._faults.profile = profile

    @property
    def probes(self) -> int:
        """How many times :meth:`probe` was called."""
        return self._faults.probes

    async def probe(self) -> None:
        """Zero-cost health check (``routing.router.Probeable``).

        Raises:
            ProviderError: 503 while the profile fails every request.
        """
        await self._faults.probe()


async def _closing(stream: AsyncIterator[T], faults: _Injector) -> AsyncIterator[T]:
    """Pass ``stream`` through, failing or hanging between items as ``faults`` plans."""
    await faults.before_first_byte()
    drop_after = faults.plan_drop()
    delivered = 0
    async with closing_stream(stream):
        async for item in stream:
            await faults.between_chunks(delivered, drop_after)
            yield item
            delivered += 1


class FaultyTTS(_Faulted):
    """Wraps a :class:`TextToSpeech` and injects the faults of ``profile``."""

    def __init__(self, inner: TextToSpeech, profile: FaultProfile, sleep: Sleep = asyncio.sleep):
        self.inner = inner
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities
        self._faults = _Injector(inner.name, profile, sleep)

    def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """See :meth:`TextToSpeech.synthesize`; raises injected ``ProviderError`` s."""
        return _closing(self.inner.synthesize(text), self._faults)


class FaultySTT(_Faulted):
    """Wraps a :class:`SpeechToText` and injects the faults of ``profile``."""

    def __init__(self, inner: SpeechToText, profile: FaultProfile, sleep: Sleep = asyncio.sleep):
        self.inner = inner
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities
        self._faults = _Injector(inner.name, profile, sleep)

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """See :meth:`SpeechToText.transcribe`; faults start once the audio has ended."""
        chunks = [chunk async for chunk in audio]
        stream = self.inner.transcribe(
            _replay(chunks), sample_rate_hz=sample_rate_hz, language=language
        )
        async for transcript in _closing(stream, self._faults):
            yield transcript


class FaultyLLM(_Faulted):
    """Wraps a :class:`LanguageModel` and injects the faults of ``profile``."""

    def __init__(self, inner: LanguageModel, profile: FaultProfile, sleep: Sleep = asyncio.sleep):
        self.inner = inner
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities
        self._faults = _Injector(inner.name, profile, sleep)

    def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """See :meth:`LanguageModel.chat`; raises injected ``ProviderError`` s."""
        return _closing(self.inner.chat(messages, tools=tools), self._faults)


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def square_wave_pcm16(num_samples: int, sample_rate_hz: int, frequency_hz: float = 500.0) -> bytes:
    """A square wave at -30 dBFS (amplitude 1024): s16le mono, ``num_samples`` samples.

    In the telephone band at any rate from 8 kHz, so that it stays audible after
    resampling to 8 kHz μ-law (a wave at the Nyquist rate would be filtered away).
    """
    half_period = max(1, round(sample_rate_hz / frequency_hz / 2))
    period = b"\x00\x04" * half_period + b"\x00\xfc" * half_period
    return (period * (num_samples // (2 * half_period) + 1))[: num_samples * 2]


class FakeTTS(_Faulted):
    """A synthetic TTS: one chunk per word, its duration set by ``words_per_second``.

    PCM is a deterministic 500 Hz square wave at -30 dBFS (audible at the caller's
    ear, :mod:`voicerail.audio.levels`), s16le mono at ``sample_rate_hz``,
    ``1 / words_per_second`` seconds per word, so audio is proportional to words.
    With ``chunk_texts`` each chunk's ``text`` is its word, so what was delivered
    can be checked word by word; without, non-final chunks carry "" and the last
    one the whole text, as many real providers do (the router must then estimate
    delivered words from audio seconds).

    Args:
        name: provider name.
        sample_rate_hz: rate of the PCM produced.
        words_per_second: nominal speaking rate (the router reads it for estimates).
        profile: faults to inject.
        seconds_per_word: overrides ``words_per_second`` (0 makes empty chunks).
        chunk_texts: see above.
        sleep: how to wait (a fake clock's sleep in tests).
    """

    def __init__(
        self,
        name: str = "fake-tts",
        sample_rate_hz: int = 16000,
        words_per_second: float = 2.5,
        *,
        profile: FaultProfile | None = None,
        seconds_per_word: float | None = None,
        chunk_texts: bool = True,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name, self.model = name, f"{name}-model"
        self.capabilities = TTSCapabilities(sample_rate_hz=sample_rate_hz)
        if seconds_per_word is None:
            seconds_per_word = 1.0 / words_per_second
        elif seconds_per_word > 0:
            words_per_second = 1.0 / seconds_per_word
        self.seconds_per_word = seconds_per_word
        self.words_per_second = words_per_second
        self.chunk_texts = chunk_texts
        self._faults = _Injector(name, profile or FaultProfile(), sleep)
        self.requests: list[str] = []

    def pcm_for(self, num_words: int) -> bytes:
        """The audio of ``num_words`` words: s16le mono at ``sample_rate_hz``."""
        rate_hz = self.capabilities.sample_rate_hz
        num_samples = round(num_words * self.seconds_per_word * rate_hz)
        return square_wave_pcm16(num_samples, rate_hz)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """See :meth:`TextToSpeech.synthesize`; one chunk per word of ``text``."""
        self.requests.append(text)
        await self._faults.before_first_byte()
        drop_after = self._faults.plan_drop()
        words = text.split()
        rate = self.capabilities.sample_rate_hz
        for index, word in enumerate(words):
            await self._faults.between_chunks(index, drop_after)
            last = index == len(words) - 1
            chunk_text = word if self.chunk_texts else (text if last else "")
            usage = None
            if last:
                audio_s = len(words) * self.seconds_per_word
                version = self.profile.model_version
                usage = Usage(self.name, self.model, version, audio_s, characters=len(text))
            yield TTSChunk(self.pcm_for(1), rate, chunk_text, usage)


class FakeSTT(_Faulted):
    """A synthetic STT that returns ``transcript`` for any audio (a partial, then the final).

    ``received_num_bytes`` lists the audio bytes of each request, to check replays.
    """

    def __init__(
        self,
        name: str = "fake-stt",
        transcript: str = "hello",
        *,
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
        """See :meth:`SpeechToText.transcribe`.

        Raises:
            ValueError: ``sample_rate_hz`` is not 8000 or 16000.
            ProviderError: an injected fault.
        """
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
        usage = Usage(self.name, self.model, self.profile.model_version, audio_s=audio_s)
        yield Transcript(self.transcript, is_final=True, confidence=0.9, usage=usage)


class FakeLLM(_Faulted):
    """A synthetic LLM that streams ``reply`` word by word, then ``tool_calls``.

    ``requests`` keeps the messages of each request, to check continuations.
    """

    def __init__(
        self,
        name: str = "fake-llm",
        reply: str = "Sure.",
        tool_calls: Sequence[ToolCall] = (),
        *,
        profile: FaultProfile | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name, self.model = name, f"{name}-model"
        self.capabilities = LLMCapabilities()
        self.reply, self.tool_calls = reply, tuple(tool_calls)
        self._faults = _Injector(name, profile or FaultProfile(), sleep)
        self.requests: list[list[ChatMessage]] = []

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """See :meth:`LanguageModel.chat`; raises injected ``ProviderError`` s."""
        self.requests.append(list(messages))
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
            self.profile.model_version,
            input_tokens=sum(len(m.content.split()) for m in messages),
            output_tokens=len(words),
        )
        finish = "tool_calls" if self.tool_calls else "stop"
        yield LLMDelta(finish_reason=finish, usage=usage)


def with_faults(provider: Any, profiles: dict[str, FaultProfile]) -> Any:
    """Wrap ``provider`` when ``profiles`` has an entry for its name; else return it.

    Raises:
        TypeError: the provider is neither STT, TTS nor LLM.
    """
    profile = profiles.get(provider.name)
    if profile is None:
        return provider
    if hasattr(provider, "synthesize"):
        return FaultyTTS(provider, profile)
    if hasattr(provider, "transcribe"):
        return FaultySTT(provider, profile)
    if hasattr(provider, "chat"):
        return FaultyLLM(provider, profile)
    raise TypeError(f"cannot inject faults into {type(provider).__name__}")


__all__ = [
    "Delay",
    "FakeLLM",
    "FakeSTT",
    "FakeTTS",
    "FaultProfile",
    "FaultyLLM",
    "FaultySTT",
    "FaultyTTS",
    "load_faults",
    "with_faults",
]
