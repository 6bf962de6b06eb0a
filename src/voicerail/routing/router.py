"""The router: provider chains that keep a call talking when a provider fails.

(Over 500 lines: the shared attempt machinery and the three routed providers
that use it. The next split moves ``RoutedSTT``/``RoutedTTS``/``RoutedLLM`` to
their own module.)

A :class:`Router` holds what all calls share about providers (breakers,
latency, retry budget, versions); :meth:`Router.bind` gives one call a
:class:`CallProviders` whose ``stt``, ``tts`` and ``llm`` implement the
ordinary provider interfaces, so the call driver cannot tell them from a
single provider.

Rules:

1. Providers are tried in configured order, skipping those whose breaker is
   open. Each attempt has a first-byte deadline — the chain's ``ttfb_timeout_s``,
   shortened to what is left of the turn's latency budget (never below
   ``min_attempt_s``) — and an idle deadline between chunks, which catches a
   provider that hangs mid-stream. A timeout of an attempt the budget had
   shortened fails over but does not count against the provider's breaker.
2. Hedging: when the attempt has produced no first byte after the provider's
   observed p95 (``LatencyTracker.hedge_delay_s``), the next provider starts
   too; the first to answer wins and the other is cancelled (``hedge_lost``).
   A primary overtaken by its hedge counts as a timeout for its breaker, so a
   hung provider stops being tried after a few sentences.
3. Failover replays the in-flight work: text-to-speech continues from the first
   word not yet delivered (from chunk texts, else estimated from the audio
   delivered at ``words_per_second``, rounded down so that no word is lost —
   at worst a word is repeated); speech-to-text replays the buffered
   utterance; the LLM restarts when nothing was delivered, and otherwise asks
   the next provider to continue the partial reply.
4. The retry budget caps speculative extra requests — hedges — at ``retry_ratio``
   of requests (plus a floor): those are what multiply load when a provider is
   slow for everyone. A failover after a failed attempt is not capped: that
   attempt is over, the call must keep talking, and the breaker stops traffic
   to the failing provider. Cancellation by the caller (barge-in) is not a
   failure and touches no breaker.
5. Every attempt is an event (``ProviderAttempted``), every switch a
   ``ProviderFailedOver``, every change of reported model version a
   ``ProviderVersionChanged``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from voicerail.clock import Clock, SystemClock
from voicerail.errors import ConfigError, ErrorClass, ProviderError, ProviderUnavailable
from voicerail.events.model import Event, EventKind, Stage
from voicerail.providers.base import (
    ChatMessage,
    LanguageModel,
    LLMDelta,
    SpeechToText,
    TextToSpeech,
    ToolSpec,
    Transcript,
    TTSChunk,
    Usage,
)
from voicerail.routing.policies import CircuitBreaker, LatencyTracker, RetryBudget, VersionTracker

P = TypeVar("P", SpeechToText, TextToSpeech, LanguageModel)
T = TypeVar("T")
Emit = Callable[[Event], object]


class Probeable(Protocol):
    """A provider that can check its health without spending tokens or characters
    (a health endpoint, a model list, a WebSocket handshake)."""

    async def probe(self) -> None:
        """Return when healthy; raise ``ProviderError`` otherwise."""
        ...


@dataclass(frozen=True)
class RoutingConfig:
    """Routing policy, seconds unless named otherwise."""

    ttfb_timeout_s: float = 1.0
    idle_timeout_s: float = 1.5
    min_attempt_s: float = 0.25
    hedge: bool = True
    hedge_default_s: float = 0.3
    words_per_second: float = 3.5
    breaker_failures: int = 3
    breaker_window_s: float = 30.0
    breaker_cooldown_s: float = 10.0
    retry_ratio: float = 0.1
    min_retries: int = 10
    max_concurrency: int | None = None
    queue_timeout_s: float = 0.2


@dataclass(frozen=True)
class Price:
    """A provider's list prices in USD (from configuration, not from the provider)."""

    per_audio_minute: float = 0.0
    per_1k_input_tokens: float = 0.0
    per_1k_output_tokens: float = 0.0
    per_1k_characters: float = 0.0

    def cost_usd(self, usage: Usage) -> float:
        """The cost of ``usage`` at these prices."""
        return (
            usage.audio_s / 60 * self.per_audio_minute
            + usage.input_tokens / 1000 * self.per_1k_input_tokens
            + usage.output_tokens / 1000 * self.per_1k_output_tokens
            + usage.characters / 1000 * self.per_1k_characters
        )


@dataclass
class _Attempt(Generic[T]):
    provider: Any
    stream: AsyncIterator[T]
    started_s: float
    number: int
    hedged: bool
    deadline_s: float = 0.0
    slot: asyncio.Semaphore | None = None
    holding: bool = False
    usage: Usage | None = None
    task: asyncio.Task[T] = field(init=False)

    async def first(self, queue_timeout_s: float) -> T:
        """Wait for a concurrency slot (if limited), then for the first item."""
        if self.slot is not None:
            try:
                await asyncio.wait_for(self.slot.acquire(), queue_timeout_s)
            except TimeoutError as exc:
                raise ProviderError(
                    f"concurrency limit: no slot within {queue_timeout_s:.2f} s",
                    provider=self.provider.name,
                    error_class=ErrorClass.TRANSIENT,
                ) from exc
            self.holding = True
        return await self.stream.__anext__()

    def release(self) -> None:
        """Give the concurrency slot back (once)."""
        if self.slot is not None and self.holding:
            self.holding = False
            self.slot.release()


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read a price table: ``{provider: {per_audio_minute, per_1k_input_tokens,
    per_1k_output_tokens, per_1k_characters}}`` in USD.

    Raises:
        ConfigError: unreadable, not a mapping, or an unknown price field.
    """
    import yaml

    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return {str(name): Price(**fields) for name, fields in raw.items()}
    except (OSError, yaml.YAMLError, TypeError, AttributeError) as exc:
        raise ConfigError(f"bad price table: {exc}", source=source) from exc


class Router:
    """Shared routing state for the chains ``stt``, ``tts`` and ``llm`` (in order)."""

    def __init__(
        self,
        *,
        stt: Sequence[SpeechToText] = (),
        tts: Sequence[TextToSpeech] = (),
        llm: Sequence[LanguageModel] = (),
        config: RoutingConfig | None = None,
        stage_configs: dict[Stage, RoutingConfig] | None = None,
        prices: dict[str, Price] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or RoutingConfig()
        self.stage_configs = dict(stage_configs or {})
        self.clock = clock or SystemClock()
        self.chains: dict[Stage, list[Any]] = {
            Stage.STT: list(stt),
            Stage.TTS: list(tts),
            Stage.LLM: list(llm),
        }
        names = [p.name for chain in self.chains.values() for p in chain]
        cfg = self.config
        self.breakers = {
            n: CircuitBreaker(cfg.breaker_failures, cfg.breaker_window_s, cfg.breaker_cooldown_s)
            for n in names
        }
        self.latency = {
            p.name: LatencyTracker(default_s=self.config_for(stage).hedge_default_s)
            for stage, chain in self.chains.items()
            for p in chain
        }
        self.retry_budget = RetryBudget(cfg.retry_ratio, cfg.min_retries)
        self.prices = dict(prices or {})
        self.slots: dict[str, asyncio.Semaphore] = {}
        for stage, chain in self.chains.items():
            limit = self.config_for(stage).max_concurrency
            for provider in chain:
                if limit is not None:
                    self.slots[provider.name] = asyncio.Semaphore(limit)
        self.versions = VersionTracker()

    def config_for(self, stage: Stage) -> RoutingConfig:
        """The policy of one chain (``stage_configs`` overrides ``config``)."""
        return self.stage_configs.get(stage, self.config)

    def bind(
        self,
        call_id: str,
        emit: Emit,
        turn_deadline_s: Callable[[], float | None] | None = None,
    ) -> CallProviders:
        """Providers for one call; ``turn_deadline_s`` returns the turn's latency
        deadline on the router's monotonic clock, or None for no turn budget."""
        scope = _CallScope(self, call_id, emit, turn_deadline_s or (lambda: None))
        return CallProviders(
            stt=RoutedSTT(scope) if self.chains[Stage.STT] else None,
            tts=RoutedTTS(scope) if self.chains[Stage.TTS] else None,
            llm=RoutedLLM(scope) if self.chains[Stage.LLM] else None,
        )

    async def run_probes(self) -> dict[str, bool]:
        """Probe providers whose breaker is half-open; close it on success.

        Providers without a ``probe()`` are left to their next real request.
        Returns provider name → probe succeeded.
        """
        results: dict[str, bool] = {}
        for chain in self.chains.values():
            for provider in chain:
                breaker = self.breakers[provider.name]
                probe = getattr(provider, "probe", None)
                if probe is None or not breaker.allow(self.clock.monotonic()):
                    continue
                if breaker.state(self.clock.monotonic()).value == "closed":
                    continue
                try:
                    await probe()
                except ProviderError as exc:
                    breaker.record_failure(exc.error_class, self.clock.monotonic())
                    results[provider.name] = False
                else:
                    breaker.record_success(self.clock.monotonic())
                    results[provider.name] = True
        return results


@dataclass(frozen=True)
class CallProviders:
    """One call's routed providers (None where the chain is empty)."""

    stt: RoutedSTT | None
    tts: RoutedTTS | None
    llm: RoutedLLM | None


class _CallScope:
    """Opens attempts along a chain for one call (rules 1, 2, 4, 5)."""

    def __init__(
        self, router: Router, call_id: str, emit: Emit, turn_deadline_s: Callable[[], float | None]
    ) -> None:
        self.router = router
        self.call_id = call_id
        self.emit = emit
        self.turn_deadline_s = turn_deadline_s

    def _now(self) -> float:
        return self.router.clock.monotonic()

    def attempt_timeout_s(self, stage: Stage) -> float:
        cfg = self.router.config_for(stage)
        deadline = self.turn_deadline_s()
        if deadline is None:
            return cfg.ttfb_timeout_s
        return max(cfg.min_attempt_s, min(cfg.ttfb_timeout_s, deadline - self._now()))

    def event(self, kind: EventKind, stage: Stage, provider: Any = None, **fields: Any) -> None:
        self.emit(
            Event(
                call_id=self.call_id,
                kind=kind,
                at_wall=self.router.clock.wall(),
                at_mono=self._now(),
                stage=stage,
                provider=provider.name if provider is not None else None,
                model=provider.model if provider is not None else None,
                **fields,
            )
        )

    def record(
        self, stage: Stage, attempt: _Attempt[Any], outcome: str, error: BaseException | None
    ) -> None:
        now = self._now()
        attempt.release()
        breaker = self.router.breakers[attempt.provider.name]
        error_class: ErrorClass | None = None
        usage_data: dict[str, Any] = {}
        if attempt.usage is not None:
            usage = attempt.usage
            usage_data = {
                "model_version": usage.model_version,
                "audio_s": usage.audio_s,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "characters": usage.characters,
            }
            price = self.router.prices.get(attempt.provider.name)
            if price is not None:
                usage_data["cost_usd"] = price.cost_usd(usage)
        if outcome == "ok":
            breaker.record_success(now)
            self.router.latency[attempt.provider.name].observe(now - attempt.started_s)
        elif outcome == "cancelled" or (outcome == "hedge_lost" and error is None):
            breaker.record_failure(ErrorClass.CANCELLED, now)
        else:
            error_class = _error_class(error)
            full_s = self.router.config_for(stage).ttfb_timeout_s
            squeezed = attempt.deadline_s - attempt.started_s < full_s - 1e-9
            if error_class is ErrorClass.TIMEOUT and squeezed:
                # The turn's budget, spent upstream, shortened this attempt: the
                # provider was not given its normal time, so it is not blamed.
                breaker.record_failure(ErrorClass.CANCELLED, now)
            else:
                breaker.record_failure(error_class, now)
        self.event(
            EventKind.PROVIDER_ATTEMPTED,
            stage,
            attempt.provider,
            latency_s=now - attempt.started_s,
            outcome=outcome,
            error_class=str(error_class) if error_class else None,
            data={
                "attempt": attempt.number,
                "hedged": attempt.hedged,
                "error": str(error) if error is not None else None,
                **usage_data,
            },
        )

    def observe_usage(self, stage: Stage, attempt: _Attempt[Any], usage: Usage | None) -> None:
        if usage is None:
            return
        attempt.usage = usage
        provider = attempt.provider
        previous = self.router.versions.observe(provider.name, provider.model, usage.model_version)
        if previous is not None:
            self.event(
                EventKind.PROVIDER_VERSION_CHANGED,
                stage,
                provider,
                data={"previous": previous, "current": usage.model_version},
            )

    async def open(
        self,
        stage: Stage,
        make_stream: Callable[[Any], AsyncIterator[T]],
        *,
        exclude: Sequence[str] = (),
        first_number: int = 1,
    ) -> tuple[_Attempt[T], T | None]:
        """Start attempts along the chain until one yields a first item.

        Returns the winning attempt and its first item (None for an empty stream).

        Raises:
            ProviderUnavailable: every provider failed, was open-circuited, or the
                retry budget was spent.
        """
        router = self.router
        candidates = [p for p in router.chains[stage] if p.name not in exclude]
        running: list[_Attempt[T]] = []
        number = first_number - 1
        tried: list[str] = list(exclude[-1:])
        last_error: BaseException | None = None
        if first_number == 1:
            router.retry_budget.record_request(self._now())

        def start_next(hedged: bool) -> bool:
            nonlocal number
            if hedged and not router.retry_budget.try_spend(self._now()):
                return False  # the candidates stay for a failover
            while candidates:
                provider = candidates.pop(0)
                if not router.breakers[provider.name].allow(self._now()):
                    continue
                if number >= 1:
                    previous = tried[-1] if tried else None
                    self.event(
                        EventKind.PROVIDER_FAILED_OVER,
                        stage,
                        provider,
                        data={"from": previous, "hedged": hedged, "error": str(last_error)},
                    )
                number += 1
                tried.append(provider.name)
                now = self._now()
                attempt = _Attempt(
                    provider,
                    make_stream(provider),
                    now,
                    number,
                    hedged,
                    # fixed when the attempt starts, from the budget left at that moment
                    deadline_s=now + self.attempt_timeout_s(stage),
                    slot=router.slots.get(provider.name),
                )
                queue_timeout_s = router.config_for(stage).queue_timeout_s
                attempt.task = asyncio.ensure_future(attempt.first(queue_timeout_s))
                running.append(attempt)
                return True
            return False

        try:
            if not start_next(hedged=False):
                raise ProviderUnavailable(f"no {stage} provider available", provider=stage.value)
            hedged_once = False
            while running:
                now = self._now()
                timeout = min(a.deadline_s for a in running) - now
                can_hedge = router.config_for(stage).hedge and not hedged_once and bool(candidates)
                if can_hedge:
                    head = running[0]
                    hedge_at = head.started_s + router.latency[head.provider.name].hedge_delay_s()
                    timeout = min(timeout, hedge_at - now)
                done, _ = await asyncio.wait(
                    [a.task for a in running],
                    timeout=max(0.0, timeout),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    now = self._now()
                    expired = [a for a in running if now >= a.deadline_s]
                    for attempt in expired:
                        running.remove(attempt)
                        last_error = TimeoutError(
                            f"no first byte within {attempt.deadline_s - attempt.started_s:.2f} s"
                        )
                        await _abandon(attempt)
                        self.record(stage, attempt, "error", last_error)
                    if not expired and can_hedge:
                        hedged_once = start_next(hedged=True)
                    elif not running:
                        start_next(hedged=False)
                    continue
                for attempt in [a for a in running if a.task in done]:
                    running.remove(attempt)
                    error = attempt.task.exception()
                    if error is None or isinstance(error, StopAsyncIteration):
                        for loser in running:
                            await _abandon(loser)
                            # A primary overtaken by its hedge was too slow: that counts
                            # against its breaker; a cancelled hedge does not.
                            slow = None
                            if attempt.hedged and not loser.hedged:
                                slow = TimeoutError("overtaken by a hedged request")
                            self.record(stage, loser, "hedge_lost", slow)
                        running.clear()
                        first = None if error is not None else attempt.task.result()
                        return attempt, first
                    last_error = error
                    await _abandon(attempt)
                    self.record(stage, attempt, "error", error)
                if not running:
                    start_next(hedged=False)
        except asyncio.CancelledError:
            for attempt in running:
                await _abandon(attempt)
                self.record(stage, attempt, "cancelled", None)
            raise
        raise ProviderUnavailable(
            f"every {stage} provider failed; last error: {last_error}",
            provider=stage.value,
            error_class=_error_class(last_error),
        )

    async def next_item(self, stage: Stage, attempt: _Attempt[T]) -> T:
        """The next item of a winning attempt, within the idle deadline.

        Raises:
            StopAsyncIteration: the stream ended.
            TimeoutError: no item within ``idle_timeout_s``.
            ProviderError: the provider failed mid-stream.
        """
        return await asyncio.wait_for(attempt.stream.__anext__(), self.router.config.idle_timeout_s)


async def _abandon(attempt: _Attempt[Any]) -> None:
    attempt.task.cancel()
    with contextlib.suppress(BaseException):
        await attempt.task
    aclose = getattr(attempt.stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _error_class(error: BaseException | None) -> ErrorClass:
    if isinstance(error, ProviderError):
        return error.error_class
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return ErrorClass.TIMEOUT
    return ErrorClass.TRANSIENT


class RoutedTTS:
    """A :class:`TextToSpeech` over the TTS chain (rule 3: continue from the unspoken words)."""

    def __init__(self, scope: _CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.TTS][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        scope = self._scope
        words = text.split()
        delivered_words = 0
        excluded: list[str] = []
        number = 1
        while delivered_words < len(words):
            remainder = " ".join(words[delivered_words:])

            def speak(provider: TextToSpeech, text: str = remainder) -> AsyncIterator[TTSChunk]:
                return provider.synthesize(text)

            attempt, chunk = await scope.open(
                Stage.TTS, speak, exclude=excluded, first_number=number
            )
            number = attempt.number + 1
            audio_s_since_text = 0.0
            words_this_attempt = 0
            try:
                while chunk is not None:
                    yield chunk
                    if chunk.text:
                        words_this_attempt += len(chunk.text.split())
                        audio_s_since_text = 0.0
                    else:
                        audio_s_since_text += len(chunk.pcm) / 2 / chunk.sample_rate_hz
                    scope.observe_usage(Stage.TTS, attempt, chunk.usage)
                    try:
                        chunk = await scope.next_item(Stage.TTS, attempt)
                    except StopAsyncIteration:
                        chunk = None
            except (ProviderError, TimeoutError) as error:
                estimated = int(
                    audio_s_since_text * scope.router.config_for(Stage.TTS).words_per_second
                )
                delivered_words += min(words_this_attempt + estimated, len(words) - delivered_words)
                excluded.append(attempt.provider.name)
                await _abandon(attempt)
                scope.record(Stage.TTS, attempt, "error", error)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await _abandon(attempt)
                scope.record(Stage.TTS, attempt, "cancelled", None)
                raise
            scope.record(Stage.TTS, attempt, "ok", None)
            return


class RoutedSTT:
    """A :class:`SpeechToText` over the STT chain (rule 3: replay the buffered utterance)."""

    def __init__(self, scope: _CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.STT][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        scope = self._scope
        buffered = [chunk async for chunk in audio]

        def replay(provider: SpeechToText) -> AsyncIterator[Transcript]:
            async def chunks() -> AsyncIterator[bytes]:
                for chunk in buffered:
                    yield chunk

            return provider.transcribe(chunks(), sample_rate_hz=sample_rate_hz, language=language)

        excluded: list[str] = []
        number = 1
        while True:
            attempt, item = await scope.open(
                Stage.STT, replay, exclude=excluded, first_number=number
            )
            number = attempt.number + 1
            held: list[Transcript] = []
            try:
                while item is not None:
                    held.append(item)
                    try:
                        item = await scope.next_item(Stage.STT, attempt)
                    except StopAsyncIteration:
                        item = None
            except (ProviderError, TimeoutError) as error:
                excluded.append(attempt.provider.name)
                await _abandon(attempt)
                scope.record(Stage.STT, attempt, "error", error)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await _abandon(attempt)
                scope.record(Stage.STT, attempt, "cancelled", None)
                raise
            for transcript in held:
                scope.observe_usage(Stage.STT, attempt, transcript.usage)
            scope.record(Stage.STT, attempt, "ok", None)
            for transcript in held:
                yield transcript
            return


class RoutedLLM:
    """A :class:`LanguageModel` over the LLM chain (rule 3: restart or continue)."""

    def __init__(self, scope: _CallScope) -> None:
        self._scope = scope
        head = scope.router.chains[Stage.LLM][0]
        self.name, self.model, self.capabilities = "router", head.model, head.capabilities

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        scope = self._scope
        partial = ""
        excluded: list[str] = []
        number = 1
        while True:
            request = list(messages)
            if partial:
                request.append(ChatMessage("assistant", partial))

            def ask(
                provider: LanguageModel, request: list[ChatMessage] = request
            ) -> AsyncIterator[LLMDelta]:
                return provider.chat(request, tools=tools)

            attempt, delta = await scope.open(Stage.LLM, ask, exclude=excluded, first_number=number)
            number = attempt.number + 1
            try:
                while delta is not None:
                    partial += delta.text
                    scope.observe_usage(Stage.LLM, attempt, delta.usage)
                    yield delta
                    try:
                        delta = await scope.next_item(Stage.LLM, attempt)
                    except StopAsyncIteration:
                        delta = None
            except (ProviderError, TimeoutError) as error:
                excluded.append(attempt.provider.name)
                await _abandon(attempt)
                scope.record(Stage.LLM, attempt, "error", error)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                await _abandon(attempt)
                scope.record(Stage.LLM, attempt, "cancelled", None)
                raise
            scope.record(Stage.LLM, attempt, "ok", None)
            return
