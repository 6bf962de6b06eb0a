"""Retry budget and per-attempt deadlines: pure arithmetic on explicit times.

Rules:

1. Extra requests (retries, hedges) may be at most ``ratio`` of the first
   requests seen in the last ``window_s``, plus ``min_retries_per_window`` so a
   quiet system can still retry. When a provider is slow for everyone, this is
   what stops retries from multiplying its load (a retry storm).
2. ``try_spend`` is the only way to take a retry; a refused retry takes nothing.
3. An attempt's deadline is cut from what is left of the turn's latency budget
   so that every later attempt of the chain still gets at least ``floor_s``;
   the last attempt gets all that is left; no attempt gets more than ``cap_s``
   or less than ``floor_s`` (an attempt shorter than that cannot succeed, and a
   late answer is still better than silence).

Retry budgets: Google SRE book, ch. 22 "Addressing Cascading Failures"
(per-client retry budget of 10%); Finagle ``RetryBudget`` (ratio + floor).
"""

from __future__ import annotations

from collections import deque


class RetryBudget:
    """Rules 1-2, shared by every call of a router.

    Args:
        ratio: retries allowed per first request (0.1 = 10%).
        min_retries_per_window: retries always allowed per ``window_s``.
        window_s: how far back requests and retries count, seconds.

    Raises:
        ValueError: a negative ratio or floor, or a non-positive window.
    """

    def __init__(
        self, ratio: float = 0.1, min_retries_per_window: int = 3, window_s: float = 10.0
    ) -> None:
        if ratio < 0 or min_retries_per_window < 0 or window_s <= 0:
            raise ValueError(
                f"retry budget needs ratio >= 0, floor >= 0, window > 0; got {ratio}, "
                f"{min_retries_per_window}, {window_s} s"
            )
        self.ratio = ratio
        self.min_retries_per_window = min_retries_per_window
        self.window_s = window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _forget_before(self, now_s: float) -> None:
        for times in (self._requests, self._retries):
            while times and now_s - times[0] >= self.window_s:
                times.popleft()

    def record_request(self, now_s: float) -> None:
        """Count one first attempt (not a retry)."""
        self._forget_before(now_s)
        self._requests.append(now_s)

    def available(self, now_s: float) -> int:
        """Retries that ``try_spend`` would grant now."""
        self._forget_before(now_s)
        allowed = self.min_retries_per_window + int(self.ratio * len(self._requests))
        return max(0, allowed - len(self._retries))

    def try_spend(self, now_s: float) -> bool:
        """Take one retry; False (and nothing taken) when the budget is spent."""
        if self.available(now_s) <= 0:
            return False
        self._retries.append(now_s)
        return True


def attempt_deadline_s(
    remaining_s: float | None, attempts_left: int, floor_s: float, cap_s: float
) -> float:
    """How long one attempt may wait for its first byte (rule 3), seconds.

    Args:
        remaining_s: what is left of the turn's latency budget, or None for none.
        attempts_left: attempts the chain could still make, this one included (>= 1).
        floor_s: the shortest useful attempt.
        cap_s: the chain's own first-byte timeout.

    Returns:
        ``min(cap_s, remaining_s - (attempts_left - 1) * floor_s)``, at least ``floor_s``.

    Raises:
        ValueError: ``attempts_left`` < 1 or ``floor_s`` > ``cap_s``.
    """
    if attempts_left < 1:
        raise ValueError(f"attempts_left must be >= 1, got {attempts_left}")
    if floor_s > cap_s:
        raise ValueError(f"floor {floor_s} s is above cap {cap_s} s")
    if remaining_s is None:
        return cap_s
    share_s = remaining_s - (attempts_left - 1) * floor_s
    return max(floor_s, min(cap_s, share_s))
