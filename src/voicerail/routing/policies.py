"""Pure routing policies: circuit breaker, retry budget, latency tracking, versions.

No asyncio and no clock reads: every method takes ``now_s`` (monotonic seconds).

Rules:

1. Circuit breaker (per provider): CLOSED until ``failure_threshold`` failures
   within ``window_s``; then OPEN for ``cooldown_s``, refusing requests; then
   HALF_OPEN, where one trial (a zero-cost probe or a real request) closes it on
   success or re-opens it on failure. A caller's cancellation is never a failure.
2. Retry budget: retries (including failovers) may be at most ``ratio`` of the
   requests in the last ``window_s``, plus ``min_retries`` so that a quiet
   system can still fail over; a retry storm cannot multiply load.
3. Hedge delay: a provider's observed p95 time to first byte, clamped to
   [``min_s``, ``max_s``]; ``default_s`` until ``min_samples`` are observed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from voicerail.errors import ErrorClass


class BreakerState(StrEnum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Rule 1. ``failure_threshold`` failures within ``window_s`` open it for ``cooldown_s``."""

    def __init__(
        self, failure_threshold: int = 3, window_s: float = 30.0, cooldown_s: float = 10.0
    ) -> None:
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._failures: deque[float] = deque()
        self._opened_at_s: float | None = None
        self._trial_in_flight = False

    def state(self, now_s: float) -> BreakerState:
        """The state at ``now_s``."""
        if self._opened_at_s is None:
            return BreakerState.CLOSED
        if now_s - self._opened_at_s < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, now_s: float) -> bool:
        """May a request go to this provider now? In HALF_OPEN, one trial at a time."""
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self, now_s: float) -> None:
        """A request or probe succeeded: close."""
        self._opened_at_s = None
        self._trial_in_flight = False
        self._failures.clear()

    def record_failure(self, error_class: ErrorClass, now_s: float) -> None:
        """A request or probe failed (``CANCELLED`` is ignored)."""
        if error_class is ErrorClass.CANCELLED:
            self._trial_in_flight = False
            return
        if self.state(now_s) is BreakerState.HALF_OPEN:
            self._opened_at_s = now_s
            self._trial_in_flight = False
            return
        self._failures.append(now_s)
        while self._failures and now_s - self._failures[0] > self.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.failure_threshold:
            self._opened_at_s = now_s
            self._failures.clear()


class RetryBudget:
    """Rule 2: retries at most ``ratio`` of recent requests (plus ``min_retries``)."""

    def __init__(self, ratio: float = 0.1, min_retries: int = 10, window_s: float = 10.0):
        self.ratio = ratio
        self.min_retries = min_retries
        self.window_s = window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now_s: float) -> None:
        for q in (self._requests, self._retries):
            while q and now_s - q[0] > self.window_s:
                q.popleft()

    def record_request(self, now_s: float) -> None:
        """Count one first attempt."""
        self._requests.append(now_s)

    def try_spend(self, now_s: float) -> bool:
        """Take one retry from the budget; False when it is spent."""
        self._trim(now_s)
        allowed = self.min_retries + self.ratio * len(self._requests)
        if len(self._retries) + 1 > allowed:
            return False
        self._retries.append(now_s)
        return True


@dataclass
class LatencyTracker:
    """Rule 3: rolling time-to-first-byte samples of one provider, seconds."""

    max_samples: int = 200
    min_samples: int = 20
    default_s: float = 0.5
    min_s: float = 0.1
    max_s: float = 1.5

    def __post_init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=self.max_samples)

    def observe(self, ttfb_s: float) -> None:
        """Record one successful request's time to first byte."""
        self._samples.append(ttfb_s)

    def p95(self) -> float | None:
        """The 95th percentile of recent samples (nearest rank), or None when too few."""
        if len(self._samples) < self.min_samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def hedge_delay_s(self) -> float:
        """How long to wait for a first byte before hedging on the next provider."""
        p95 = self.p95()
        return self.default_s if p95 is None else min(self.max_s, max(self.min_s, p95))


class VersionTracker:
    """Remembers the model version each provider reported last."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], str] = {}

    def observe(self, provider: str, model: str, version: str | None) -> str | None:
        """Record ``version``; returns the previous version when it changed, else None."""
        if not version:
            return None
        key = (provider, model)
        previous = self._last.get(key)
        self._last[key] = version
        return previous if previous is not None and previous != version else None
