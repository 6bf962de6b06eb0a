"""The router: provider chains that keep a call talking when a provider fails.

A :class:`Router` holds what every call shares about providers (breakers,
latency windows, the retry budget, concurrency slots, model versions);
:meth:`Router.bind` gives one call a :class:`CallProviders` whose ``stt``,
``tts`` and ``llm`` implement the ordinary provider interfaces, so the session
driver cannot tell them from a single provider. Decisions live in the pure
policies (``breaker``, ``budget``, ``latency``, ``versions``); this module
only starts, waits for and cancels attempts.

Rules:

1. Providers are tried in chain order, skipping those whose breaker refuses.
   Each attempt gets a first-byte deadline fixed when it starts:
   ``budget.attempt_deadline_s`` of what is left of the turn's latency budget,
   the attempts still possible, ``min_attempt_s`` and ``ttfb_timeout_s``. After
   the first byte, an idle deadline (``idle_timeout_s``) between items catches
   a provider that hangs mid-stream. Waiting for a concurrency slot counts
   against the attempt and gives up after ``queue_timeout_s``.
2. Hedging: when ``hedge`` is on and an attempt has no first byte after its
   provider's observed p95 TTFB (``LatencyTracker.hedge_delay_s``), the next
   provider starts too; the first to answer wins, the other is cancelled and
   recorded as ``hedge_lost``. A primary overtaken by its hedge counts as a
   timeout for its breaker (so a hung provider stops being tried); a cancelled
   hedge counts as nothing.
3. Failover replays the in-flight work:

   * TTS continues from the first word not yet delivered. Delivered words are
     counted from chunk texts; audio yielded after the last chunk with text is
     converted to words at the provider's nominal ``words_per_second``
     attribute (else the chain's), rounded down. With chunk texts no word is
     repeated or lost; with the estimate, a word may at worst be repeated,
     never lost (losing a word changes meaning, repeating one does not).
   * STT buffers the utterance as it reads it and replays it whole to the next
     provider. Partial transcripts pass through at once; final ones are held
     until the attempt ends, so a failover never yields a final twice.
   * LLM restarts when nothing was yielded, and otherwise asks the next
     provider to continue the partial assistant text (sent as a trailing
     assistant message).
4. The retry budget caps speculative extra requests, that is hedges: those
   multiply load when a provider is slow for everyone. A failover after a
   failed attempt is not capped: that attempt is over, the call must keep
   talking, and the breaker already stops traffic to a failing provider.
5. Cancellation by the caller (``CancelledError`` or ``aclose()``; barge-in) is
   not a failure: it is recorded as ``cancelled`` and touches no breaker.
6. Every attempt emits ``ProviderAttempted`` (outcome ``ok`` / ``error`` /
   ``cancelled`` / ``hedge_lost``, ``latency_s`` = TTFB when there was a first
   byte, else the time until the attempt ended), every switch
   ``ProviderFailedOver`` (``from``, ``to``, ``reason``), every changed model
   version ``ProviderVersionChanged``.
7. Recovery is probed without spending tokens or characters: providers that
   have ``async def probe()`` (:class:`Probeable`) are probed by
   :meth:`Router.run_probes` once their breaker is half-open. Providers without
   one recover on their next real request (the half-open trial).
8. Providers carry a ``quality`` rank (0-1, default 1). A transient error
   with time left in the turn is retried once on the same provider before
   failing over to one ``retry_quality_gap`` or more below it: a 503 from
   faster-whisper is worth a second try before pocketsphinx, which hears far
   worse. Timeouts are not retried (the time is gone), nor our own queue.
   Nor does a much weaker provider take a share of the turn's budget: an
   attempt followed only by much weaker ones gets its whole ``ttfb_timeout_s``
   whatever is left of the budget, so a local model that is merely queued
   under load is not abandoned for a worse one that competes for the same
   cores (its decode would finish anyway: CTranslate2 cannot be interrupted).

Layout: this module holds configuration and shared state; ``attempts.py``
starts and races attempts (rules 1, 2, 4-6, 8); ``routed.py`` holds the three
routed providers and their replays (rules 3, 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from voicerail.clock import Clock, SystemClock
from voicerail.errors import ConfigError, ProviderError
from voicerail.events.model import Stage
from voicerail.providers.base import (
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    Usage,
)
from voicerail.routing.attempts import CallScope, Emit
from voicerail.routing.breaker import BreakerState, CircuitBreaker
from voicerail.routing.budget import RetryBudget
from voicerail.routing.latency import LatencyTracker
from voicerail.routing.routed import RoutedLLM, RoutedSTT, RoutedTTS
from voicerail.routing.versions import VersionTracker


@runtime_checkable
class Probeable(Protocol):
    """A provider that can check its health without spending tokens or characters
    (a health endpoint, a model list, a WebSocket handshake)."""

    async def probe(self) -> None:
        """Return when healthy.

        Raises:
            ProviderError: the provider is still unhealthy.
        """
        ...


@dataclass(frozen=True)
class ChainConfig:
    """Routing policy of one chain; seconds unless named otherwise.

    Attributes:
        providers: provider names selecting and ordering the chain; empty keeps
            the providers given to :class:`Router` in their order.
        ttfb_timeout_s: the longest wait for an attempt's first byte.
        idle_timeout_s: the longest gap between items after the first byte.
        min_attempt_s: the shortest first-byte deadline, however late the turn is.
        hedge: start the next provider when the first is slower than its p95.
        hedge_default_s: hedge delay until a provider has enough TTFB samples.
        words_per_second: nominal speaking rate, for TTS providers without their own.
        breaker_failures: failures within ``breaker_window_s`` that open a breaker.
        breaker_window_s: how far back failures count.
        breaker_cooldown_s: how long an open breaker refuses requests.
        retry_ratio: hedges allowed per request (rule 4).
        min_retries_per_window: hedges always allowed per 10 s.
        max_concurrency: requests in flight per provider; None for no limit.
        queue_timeout_s: longest wait for a concurrency slot.
        retry_quality_gap: retry a transient error on the same provider before
            failing over to one this much lower in ``quality`` (rule 8).
    """

    providers: Sequence[str] = ()
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
    # 10, not RetryBudget's 3: bench/failover.py with 10 overlapping turns on a hung
    # primary adds ~950 ms p50 with 3 (turns wait for the deadline), ~200 ms with 10.
    min_retries_per_window: int = 10
    max_concurrency: int | None = None
    queue_timeout_s: float = 0.2
    retry_quality_gap: float = 0.3


RoutingConfig = ChainConfig  # the earlier name, kept for configuration code


@dataclass(frozen=True)
class Price:
    """A provider's list prices in USD (from configuration, not from the provider)."""

    per_audio_minute: float = 0.0
    per_1k_input_tokens: float = 0.0
    per_1k_output_tokens: float = 0.0
    per_1k_characters: float = 0.0

    def cost_usd(self, usage: Usage) -> float:
        """The cost of ``usage`` at these prices, USD."""
        return (
            usage.audio_s / 60 * self.per_audio_minute
            + usage.input_tokens / 1000 * self.per_1k_input_tokens
            + usage.output_tokens / 1000 * self.per_1k_output_tokens
            + usage.characters / 1000 * self.per_1k_characters
        )


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


def _select(chain: Sequence[Any], names: Sequence[str], stage: Stage, strict: bool) -> list[Any]:
    """Filter and order ``chain`` by ``names``.

    A stage's own config (``strict``) must name only providers of its chain. The
    shared config names providers of every chain; a chain none of whose
    providers it names keeps its given order.
    """
    by_name = {p.name: p for p in chain}
    unknown = [n for n in names if n not in by_name]
    if strict and unknown:
        raise ConfigError(f"unknown {stage} provider {unknown[0]!r}", field="providers")
    picked = [by_name[n] for n in names if n in by_name]
    return picked or list(chain)


class Router:
    """Shared routing state for the chains ``stt``, ``tts`` and ``llm`` (in order).

    Args:
        stt: speech-to-text providers, first preferred.
        tts: text-to-speech providers, first preferred.
        llm: language models, first preferred.
        config: the policy of every chain without its own in ``stage_configs``.
        clock: monotonic and wall time (events, breakers, deadlines).
        stage_configs: per-stage policies overriding ``config``.
        prices: provider name → list prices, for ``cost_usd`` on attempt events.

    Raises:
        ConfigError: a ``providers`` name that is not in its chain.
    """

    def __init__(
        self,
        stt: Sequence[SpeechToText] = (),
        tts: Sequence[TextToSpeech] = (),
        llm: Sequence[LanguageModel] = (),
        config: ChainConfig | None = None,
        clock: Clock | None = None,
        *,
        stage_configs: dict[Stage, ChainConfig] | None = None,
        prices: dict[str, Price] | None = None,
    ) -> None:
        self.config = config or ChainConfig()
        self.stage_configs = dict(stage_configs or {})
        self.clock = clock or SystemClock()
        self.prices = dict(prices or {})
        given: dict[Stage, Sequence[Any]] = {Stage.STT: stt, Stage.TTS: tts, Stage.LLM: llm}
        known = {p.name for chain in given.values() for p in chain}
        unknown = [n for n in self.config.providers if n not in known]
        if unknown:
            raise ConfigError(f"unknown provider {unknown[0]!r}", field="providers")
        self.chains: dict[Stage, list[Any]] = {
            stage: _select(
                chain, self.config_for(stage).providers, stage, stage in self.stage_configs
            )
            for stage, chain in given.items()
        }
        self.breakers: dict[str, CircuitBreaker] = {}
        self.latency: dict[str, LatencyTracker] = {}
        self.slots: dict[str, asyncio.Semaphore] = {}
        for stage, chain in self.chains.items():
            cfg = self.config_for(stage)
            for provider in chain:
                self.breakers[provider.name] = CircuitBreaker(
                    cfg.breaker_failures, cfg.breaker_window_s, cfg.breaker_cooldown_s
                )
                self.latency[provider.name] = LatencyTracker(default_s=cfg.hedge_default_s)
                if cfg.max_concurrency is not None:
                    self.slots[provider.name] = asyncio.Semaphore(cfg.max_concurrency)
        self.retry_budget = RetryBudget(self.config.retry_ratio, self.config.min_retries_per_window)
        self.versions = VersionTracker()
        #: Told how long each request waited for a concurrency slot, seconds (the
        #: server's admission reads it as a load signal).
        self.on_queue_wait: Callable[[float], None] | None = None

    def config_for(self, stage: Stage) -> ChainConfig:
        """The policy of one chain (``stage_configs`` overrides ``config``)."""
        return self.stage_configs.get(stage, self.config)

    def bind(
        self,
        call_id: str,
        emit: Emit,
        turn_deadline: Callable[[], float | None] | None = None,
    ) -> CallProviders:
        """Providers for one call.

        Args:
            call_id: the call's id, put on every event.
            emit: receives every routing event of the call.
            turn_deadline: returns the turn's latency deadline on the router's
                monotonic clock, or None when no turn budget applies.
        """
        scope = CallScope(self, call_id, emit, turn_deadline or (lambda: None))
        return CallProviders(
            stt=RoutedSTT(scope) if self.chains[Stage.STT] else None,
            tts=RoutedTTS(scope) if self.chains[Stage.TTS] else None,
            llm=RoutedLLM(scope) if self.chains[Stage.LLM] else None,
        )

    async def run_probes(self) -> dict[str, bool]:
        """Probe providers whose breaker is half-open; a success closes it (rule 7).

        Returns:
            Provider name → probe succeeded, for the providers probed.
        """
        results: dict[str, bool] = {}
        for chain in self.chains.values():
            for provider in chain:
                name: str = provider.name
                breaker = self.breakers[name]
                now = self.clock.monotonic()
                if not isinstance(provider, Probeable):
                    continue
                if breaker.state(now) is not BreakerState.HALF_OPEN or not breaker.allow(now):
                    continue
                try:
                    await provider.probe()
                except ProviderError as exc:
                    breaker.record_failure(exc.error_class, self.clock.monotonic())
                    results[name] = False
                else:
                    breaker.record_success(self.clock.monotonic())
                    results[name] = True
        return results


@dataclass(frozen=True)
class CallProviders:
    """One call's routed providers (None where the chain is empty)."""

    stt: RoutedSTT | None
    tts: RoutedTTS | None
    llm: RoutedLLM | None


__all__ = [
    "CallProviders",
    "ChainConfig",
    "Price",
    "Probeable",
    "Router",
    "RoutingConfig",
    "load_prices",
]
