"""Circuit breaker for one provider: a pure state machine on explicit times.

No asyncio and no clock reads: every method takes ``now_s``, seconds on the
router's monotonic clock. Tests drive it with plain numbers (or a ``FakeClock``).

Rules:

1. CLOSED lets every request through. It remembers the times of failures in
   the last ``window_s`` and opens when ``failure_threshold`` of them fall in
   that window.
2. OPEN refuses every request until ``cooldown_s`` has passed since it opened.
3. HALF_OPEN (cooldown passed) admits one trial at a time: a zero-cost probe
   (``Router.run_probes``) or a real request. Success closes the breaker and
   forgets old failures; failure re-opens it for another ``cooldown_s``. A trial
   whose outcome never came back frees its place after ``cooldown_s``, so a
   lost outcome cannot wedge the breaker half-open forever.
4. ``ErrorClass.CANCELLED`` (barge-in, a hedge no longer needed) is never a
   failure; it only frees the HALF_OPEN trial place.
5. A success while CLOSED clears nothing: failures age out of the window, so a
   provider failing every other request still opens.

Pattern: M. Nygard, *Release It!* (2nd ed., 2018), ch. 5 "Circuit Breaker".
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

from voicerail.errors import ErrorClass


class BreakerState(StrEnum):
    """Circuit breaker states (rules 1-3)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Rules 1-5 for one provider.

    Args:
        failure_threshold: failures within ``window_s`` that open the breaker (>= 1).
        window_s: how far back failures count, seconds.
        cooldown_s: how long an open breaker refuses requests, seconds.

    Raises:
        ValueError: a non-positive threshold, window or cooldown.
    """

    def __init__(
        self, failure_threshold: int = 3, window_s: float = 30.0, cooldown_s: float = 10.0
    ) -> None:
        if failure_threshold < 1 or window_s <= 0 or cooldown_s <= 0:
            raise ValueError(
                f"breaker needs threshold >= 1 and positive times, got {failure_threshold}, "
                f"{window_s} s, {cooldown_s} s"
            )
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._failures: deque[float] = deque()
        self._opened_at_s: float | None = None
        self._trial_started_s: float | None = None

    def state(self, now_s: float) -> BreakerState:
        """The state at ``now_s`` (rule 2: OPEN turns HALF_OPEN by itself)."""
        if self._opened_at_s is None:
            return BreakerState.CLOSED
        if now_s - self._opened_at_s < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, now_s: float) -> bool:
        """May a request go to this provider now?

        In HALF_OPEN a True answer takes the single trial place (rule 3); the
        caller must report the outcome with ``record_success`` or ``record_failure``.
        """
        state = self.state(now_s)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        trial = self._trial_started_s
        if trial is not None and now_s - trial < self.cooldown_s:
            return False
        self._trial_started_s = now_s
        return True

    def record_success(self, now_s: float) -> None:
        """A request or probe succeeded (rule 3: closes a HALF_OPEN breaker)."""
        state = self.state(now_s)
        if state is BreakerState.OPEN:
            return  # a request sent before it opened: it proves nothing now
        if state is BreakerState.HALF_OPEN:
            self._opened_at_s = None
            self._failures.clear()
        self._trial_started_s = None

    def record_failure(self, error_class: ErrorClass, now_s: float) -> None:
        """A request or probe failed; ``CANCELLED`` is not a failure (rule 4)."""
        if error_class is ErrorClass.CANCELLED:
            self._trial_started_s = None
            return
        state = self.state(now_s)
        if state is BreakerState.OPEN:
            return
        if state is BreakerState.HALF_OPEN:
            self._open(now_s)
            return
        self._failures.append(now_s)
        while self._failures and now_s - self._failures[0] > self.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.failure_threshold:
            self._open(now_s)

    def _open(self, now_s: float) -> None:
        self._opened_at_s = now_s
        self._trial_started_s = None
        self._failures.clear()
