"""Attempts along one provider chain: start, race, time out, cancel, record.

The mechanics of rules 1, 2, 4, 5 and 6 of :mod:`voicerail.routing.router`
(deadlines, hedging, the retry budget, cancellation, events); the policies
themselves live in ``breaker.py``, ``budget.py``, ``latency.py`` and
``versions.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from voicerail.clock import Clock, SystemClock
from voicerail.errors import ErrorClass, ProviderError, ProviderUnavailable
from voicerail.events.model import Event, EventKind, Stage
from voicerail.providers.base import Usage
from voicerail.routing.breaker import BreakerState
from voicerail.routing.budget import attempt_deadline_s

if TYPE_CHECKING:
    from voicerail.routing.router import Router

T = TypeVar("T")
Emit = Callable[[Event], object]


# A refused hedge is asked for again this often while its primary still has no first
# byte: the budget refills as other requests arrive, and a poll costs next to nothing.
_HEDGE_RETRY_S = 0.05


class QueueFull(ProviderError):
    """Our own concurrency limit refused the request: not the provider's fault, so it
    is reported as an error but never counted against the provider's breaker."""


@dataclass
class Attempt(Generic[T]):
    """One request to one provider."""

    provider: Any
    stream: AsyncIterator[T]
    started_s: float
    number: int
    hedged: bool
    deadline_s: float
    slot: asyncio.Semaphore | None = None
    on_queue_wait: Callable[[float], None] | None = None
    holding: bool = False
    ttfb_s: float | None = None
    usage: Usage | None = None
    clock: Clock = field(default_factory=SystemClock)  # the router's: waits use it
    task: asyncio.Task[T] = field(init=False)

    async def first(self, queue_timeout_s: float) -> T:
        """Wait for a concurrency slot (if limited), then for the first item.

        Raises:
            ProviderError: no slot within ``queue_timeout_s`` (transient).
            StopAsyncIteration: the stream was empty.
        """
        if self.slot is not None:
            # The wait is measured on the loop (load is real time); the deadline is
            # the router clock's.
            loop = asyncio.get_running_loop()
            waited_from = loop.time()
            try:
                await self.clock.wait_for(self.slot.acquire(), queue_timeout_s)
            except TimeoutError as exc:
                if self.on_queue_wait is not None:
                    self.on_queue_wait(loop.time() - waited_from)
                raise QueueFull(
                    f"concurrency limit: no slot within {queue_timeout_s:.2f} s",
                    provider=self.provider.name,
                    error_class=ErrorClass.TRANSIENT,
                ) from exc
            self.holding = True
            if self.on_queue_wait is not None:  # the admission signal (session/load.py)
                self.on_queue_wait(loop.time() - waited_from)
        return await self.stream.__anext__()

    def release(self) -> None:
        """Give the concurrency slot back (once)."""
        if self.slot is not None and self.holding:
            self.holding = False
            self.slot.release()


class CallScope:
    """Opens attempts along a chain for one call (rules 1, 2, 4, 6)."""

    def __init__(
        self, router: Router, call_id: str, emit: Emit, turn_deadline: Callable[[], float | None]
    ) -> None:
        self.router = router
        self.call_id = call_id
        self.emit = emit
        self.turn_deadline = turn_deadline

    def now(self) -> float:
        return self.router.clock.monotonic()

    def event(self, kind: EventKind, stage: Stage, provider: Any = None, **fields: Any) -> None:
        self.emit(
            Event(
                call_id=self.call_id,
                kind=kind,
                at_wall=self.router.clock.wall(),
                at_mono=self.now(),
                stage=stage,
                provider=provider.name if provider is not None else None,
                model=provider.model if provider is not None else None,
                **fields,
            )
        )

    def deadline_s(self, stage: Stage, attempts_left: int) -> float:
        """Rule 1: an attempt's first-byte deadline on the router clock."""
        cfg = self.router.config_for(stage)
        now = self.now()
        turn_deadline = self.turn_deadline()
        remaining_s = None if turn_deadline is None else turn_deadline - now
        floor_s = min(cfg.min_attempt_s, cfg.ttfb_timeout_s)
        return now + attempt_deadline_s(remaining_s, attempts_left, floor_s, cfg.ttfb_timeout_s)

    def first_byte(self, attempt: Attempt[Any]) -> None:
        attempt.ttfb_s = self.now() - attempt.started_s
        self.router.latency[attempt.provider.name].observe(attempt.ttfb_s)

    def record(
        self, stage: Stage, attempt: Attempt[Any], outcome: str, error: BaseException | None
    ) -> None:
        """Close one attempt: release its slot, tell its breaker, emit its event (rule 6)."""
        now = self.now()
        attempt.release()
        provider = attempt.provider
        breaker = self.router.breakers[provider.name]
        error_class: ErrorClass | None = None
        if outcome == "ok":
            breaker.record_success(now)
        elif error is None or isinstance(error, QueueFull):
            # cancelled, a hedge that lost a fair race, or our own queue: no failure
            breaker.record_failure(ErrorClass.CANCELLED, now)
            error_class = error_class_of(error) if error is not None else None
        else:
            error_class = error_class_of(error)
            breaker.record_failure(error_class, now)
        version = self.router.versions.current(provider.name, provider.model)
        data: dict[str, Any] = {
            "attempt": attempt.number,
            "hedged": attempt.hedged,
            "model_version": version,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
        }
        data.update(self._usage_data(attempt))
        self.event(
            EventKind.PROVIDER_ATTEMPTED,
            stage,
            provider,
            latency_s=attempt.ttfb_s if attempt.ttfb_s is not None else now - attempt.started_s,
            outcome=outcome,
            error_class=str(error_class) if error_class else None,
            data=data,
        )

    def _usage_data(self, attempt: Attempt[Any]) -> dict[str, Any]:
        usage = attempt.usage
        if usage is None:
            return {}
        data: dict[str, Any] = {
            "audio_s": usage.audio_s,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "characters": usage.characters,
        }
        price = self.router.prices.get(attempt.provider.name)
        if price is not None:
            data["cost_usd"] = price.cost_usd(usage)
        return data

    def observe_usage(self, stage: Stage, attempt: Attempt[Any], usage: Usage | None) -> None:
        """Keep an attempt's usage; emit ``ProviderVersionChanged`` on a new version."""
        if usage is None:
            return
        attempt.usage = usage
        provider = attempt.provider
        change = self.router.versions.observe(provider.name, provider.model, usage.model_version)
        if change is not None:
            self.event(
                EventKind.PROVIDER_VERSION_CHANGED,
                stage,
                provider,
                data={"previous": change.previous, "current": change.current},
            )

    async def open(
        self,
        stage: Stage,
        make_stream: Callable[[Any], AsyncIterator[T]],
        *,
        exclude: Sequence[str] = (),
        first_number: int = 1,
        reason: str | None = None,
    ) -> tuple[Attempt[T], T | None]:
        """Start attempts along the chain until one yields a first item.

        Args:
            stage: which chain.
            make_stream: starts the request on one provider.
            exclude: providers already tried for this request (the last one is
                the provider failed over from).
            first_number: the number of the first attempt started here.
            reason: why the previous attempt of this request ended, if one did.

        Returns:
            The winning attempt and its first item (None for an empty stream).

        Raises:
            ProviderUnavailable: every provider failed or was open-circuited.
        """
        run = _Opening(self, stage, make_stream, exclude, first_number, reason)
        return await run.wait()

    async def next_item(self, stage: Stage, attempt: Attempt[T]) -> T:
        """The next item of a winning attempt, within the idle deadline.

        Raises:
            StopAsyncIteration: the stream ended.
            TimeoutError: no item within ``idle_timeout_s``.
            ProviderError: the provider failed mid-stream.
        """
        idle_timeout_s = self.router.config_for(stage).idle_timeout_s
        return await self.router.clock.wait_for(attempt.stream.__anext__(), idle_timeout_s)


class _Opening(Generic[T]):
    """The attempts racing for one request's first item (rules 1, 2, 4)."""

    def __init__(
        self,
        scope: CallScope,
        stage: Stage,
        make_stream: Callable[[Any], AsyncIterator[T]],
        exclude: Sequence[str],
        first_number: int,
        reason: str | None,
    ) -> None:
        self.scope = scope
        self.router = scope.router
        self.stage = stage
        self.cfg = self.router.config_for(stage)
        self.make_stream = make_stream
        self.candidates = [p for p in self.router.chains[stage] if p.name not in exclude]
        self.tried: list[str] = list(exclude[-1:])
        self.number = first_number - 1
        self.reason = reason
        self.running: list[Attempt[T]] = []
        self.last_error: BaseException | None = None
        self.hedge_retry_s = 0.0  # no hedge before this time (router clock)
        self.retried: set[str] = set()  # providers retried after a transient error
        if first_number == 1:
            self.router.retry_budget.record_request(scope.now())

    def start_next(self, hedged: bool) -> bool:
        """Start the next provider whose breaker allows it; False when none is left."""
        now = self.scope.now()
        if hedged and not self.router.retry_budget.try_spend(now):
            return False  # the candidates stay for a failover (rule 4)
        while self.candidates:
            provider = self.candidates.pop(0)
            if not self.router.breakers[provider.name].allow(now):
                continue
            if self.number >= 1:
                reason = "hedge" if hedged else self.reason or str(error_class_of(self.last_error))
                if self.tried and provider.name == self.tried[-1]:
                    reason = "retry"  # rule 8: the same provider again
                self.scope.event(
                    EventKind.PROVIDER_FAILED_OVER,
                    self.stage,
                    provider,
                    data={
                        "from": self.tried[-1] if self.tried else None,
                        "to": provider.name,
                        "reason": reason,
                        "hedged": hedged,
                    },
                )
            self.number += 1
            self.tried.append(provider.name)
            # Rule 8: a much weaker provider after this one takes no share of the
            # budget; this one may use all of it (a queued local model finishes).
            floor = getattr(provider, "quality", 1.0) - self.cfg.retry_quality_gap
            open_after = sum(
                self.router.breakers[p.name].state(now) is not BreakerState.OPEN
                and getattr(p, "quality", 1.0) > floor
                for p in self.candidates
            )
            deadline_s = self.scope.deadline_s(self.stage, 1 + open_after)
            if open_after == 0 and any(
                self.router.breakers[p.name].state(now) is not BreakerState.OPEN
                for p in self.candidates
            ):
                # Only much weaker providers are left (rule 8): this attempt has its
                # whole first-byte timeout, whatever is left of the turn's budget.
                deadline_s = max(deadline_s, now + self.cfg.ttfb_timeout_s)
            attempt = Attempt(
                provider,
                self.make_stream(provider),
                now,
                self.number,
                hedged,
                deadline_s=deadline_s,
                slot=self.router.slots.get(provider.name),
                on_queue_wait=self.router.on_queue_wait,
                clock=self.router.clock,
            )
            attempt.task = asyncio.ensure_future(attempt.first(self.cfg.queue_timeout_s))
            self.running.append(attempt)
            return True
        return False

    async def wait(self) -> tuple[Attempt[T], T | None]:
        try:
            if not self.start_next(hedged=False):
                raise ProviderUnavailable(
                    f"no {self.stage} provider available", provider=self.stage.value
                )
            hedged = False  # at most one hedge per request
            while self.running:
                can_hedge = self.cfg.hedge and not hedged and bool(self.candidates)
                done = await self._wait_any(can_hedge)
                if not done:
                    if not await self._expire() and can_hedge:
                        hedged = self.start_next(hedged=True)
                        if not hedged:  # the budget said no: ask again a little later
                            self.hedge_retry_s = self.scope.now() + _HEDGE_RETRY_S
                    elif not self.running:
                        self.start_next(hedged=False)
                    continue
                won = await self._settle(done)
                if won is not None:
                    return won
                if not self.running:
                    self.start_next(hedged=False)
        except asyncio.CancelledError:
            for attempt in self.running:
                await abandon(attempt)
                self.scope.record(self.stage, attempt, "cancelled", None)
            raise
        raise ProviderUnavailable(
            f"every {self.stage} provider failed; last error: {self.last_error}",
            provider=self.stage.value,
            error_class=error_class_of(self.last_error),
        )

    async def _wait_any(self, can_hedge: bool) -> set[asyncio.Task[T]]:
        now = self.scope.now()
        timeout = min(a.deadline_s for a in self.running) - now
        if can_hedge:
            head = self.running[0]
            hedge_at = head.started_s + self.router.latency[head.provider.name].hedge_delay_s()
            timeout = min(timeout, max(hedge_at, self.hedge_retry_s) - now)
        # On the loop's clock, which is the router clock's (SystemClock, AutoClock):
        # asyncio.wait returns the tasks done at the deadline, which wait_for cannot.
        done, _ = await asyncio.wait(
            [a.task for a in self.running],
            timeout=max(0.0, timeout),
            return_when=asyncio.FIRST_COMPLETED,
        )
        return done

    async def _expire(self) -> bool:
        """Abandon attempts past their first-byte deadline; True when one was."""
        now = self.scope.now()
        expired = [a for a in self.running if now >= a.deadline_s]
        for attempt in expired:
            self.running.remove(attempt)
            self.last_error = TimeoutError(
                f"no first byte within {attempt.deadline_s - attempt.started_s:.2f} s"
            )
            await abandon(attempt)
            self.scope.record(self.stage, attempt, "error", self.last_error)
        return bool(expired)

    async def _settle(self, done: set[asyncio.Task[T]]) -> tuple[Attempt[T], T | None] | None:
        """Take the first finished attempt that answered; record the failed ones."""
        for attempt in [a for a in self.running if a.task in done]:
            self.running.remove(attempt)
            error = attempt.task.exception()
            if error is None or isinstance(error, StopAsyncIteration):
                self.scope.first_byte(attempt)
                for loser in self.running:
                    await abandon(loser)
                    slow = None  # a cancelled hedge is no failure (rule 2) ...
                    if attempt.hedged and not loser.hedged:  # ... an overtaken primary is
                        slow = TimeoutError("overtaken by a hedged request")
                    self.scope.record(self.stage, loser, "hedge_lost", slow)
                self.running.clear()
                return attempt, (None if error is not None else attempt.task.result())
            self.last_error = error
            await abandon(attempt)
            self.scope.record(self.stage, attempt, "error", error)
            self._retry_before_a_weaker_provider(attempt.provider, error)
        return None

    def _retry_before_a_weaker_provider(self, provider: Any, error: BaseException) -> None:
        """Rule 8: a transient error with time left is retried once on the same
        provider when the next one is much weaker (``quality`` gap)."""
        if provider.name in self.retried or isinstance(error, QueueFull):
            return
        if error_class_of(error) is not ErrorClass.TRANSIENT:
            return
        now = self.scope.now()
        nxt = next((p for p in self.candidates if self.router.breakers[p.name].allow(now)), None)
        if nxt is None:
            return
        gap = getattr(provider, "quality", 1.0) - getattr(nxt, "quality", 1.0)
        if gap < self.cfg.retry_quality_gap:
            return
        if self.scope.deadline_s(self.stage, 2) - now < self.cfg.min_attempt_s:
            return  # no time for a retry and a failover after it
        self.retried.add(provider.name)
        self.candidates.insert(0, provider)


async def abandon(attempt: Attempt[Any]) -> None:
    """Cancel an attempt and close its stream; its own errors no longer matter.

    Raises:
        asyncio.CancelledError: the task running this was cancelled meanwhile.
            (Suppressing every exception of ``await attempt.task`` swallowed
            that too: a call ended while a slow provider was abandoned kept its
            reply job running, waiting for marks that never came, so the call
            never ended and a drain could not finish.)
    """
    attempt.task.cancel()
    await asyncio.wait([attempt.task])  # never raises the attempt's own error
    if not attempt.task.cancelled():
        attempt.task.exception()  # retrieved: its errors no longer matter
    aclose = getattr(attempt.stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def error_class_of(error: BaseException | None) -> ErrorClass:
    if isinstance(error, ProviderError):
        return error.error_class
    if isinstance(error, TimeoutError):
        return ErrorClass.TIMEOUT
    return ErrorClass.TRANSIENT
