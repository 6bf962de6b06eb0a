"""Rolling time-to-first-byte (TTFB) per provider, and the hedge delay it implies.

Rules:

1. Only successful attempts are observed, by their TTFB in seconds (a timeout
   says nothing about how fast the provider answers when it does).
2. The window keeps the last ``max_samples`` observations.
3. ``hedge_delay_s`` is the window's p95 (nearest rank) clamped to
   [``min_s``, ``max_s``]; with fewer than ``min_samples`` observations it is
   ``default_s``: hedging on a p95 of three samples would hedge at random.

Hedged requests: J. Dean and L. A. Barroso, "The Tail at Scale", CACM 56(2), 2013
(send a second request after the first has been outstanding past the p95).
"""

from __future__ import annotations

import math
from collections import deque


class LatencyTracker:
    """Rules 1-3 for one provider.

    Args:
        max_samples: observations kept (rule 2).
        min_samples: observations needed before p95 is trusted (rule 3).
        default_s: hedge delay until then, seconds.
        min_s: lowest hedge delay, seconds.
        max_s: highest hedge delay, seconds.

    Raises:
        ValueError: ``min_s`` > ``max_s`` or a sample count below 1.
    """

    def __init__(
        self,
        max_samples: int = 200,
        min_samples: int = 20,
        default_s: float = 0.5,
        min_s: float = 0.05,
        max_s: float = 1.5,
    ) -> None:
        if min_s > max_s or max_samples < 1 or min_samples < 1:
            raise ValueError(
                f"latency tracker needs min_s <= max_s and counts >= 1; got {min_s} s, "
                f"{max_s} s, {max_samples}, {min_samples}"
            )
        self.min_samples = min_samples
        self.default_s = default_s
        self.min_s = min_s
        self.max_s = max_s
        self._samples: deque[float] = deque(maxlen=max_samples)

    def __len__(self) -> int:
        return len(self._samples)

    def observe(self, ttfb_s: float) -> None:
        """Record one successful attempt's time to first byte, seconds (rule 1)."""
        self._samples.append(max(0.0, ttfb_s))

    def p95(self) -> float | None:
        """The 95th percentile TTFB (nearest rank), seconds; None with too few samples."""
        if len(self._samples) < self.min_samples:
            return None
        ordered = sorted(self._samples)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    def hedge_delay_s(self) -> float:
        """How long to wait for a first byte before hedging on the next provider (rule 3)."""
        p95 = self.p95()
        if p95 is None:
            return self.default_s
        return min(self.max_s, max(self.min_s, p95))
