"""Small statistics helpers for load runs: percentiles and a mergeable histogram."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99 and max of ``values`` (None entries when empty)."""
    data = list(values)
    if not data:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "count": len(data),
        "mean": sum(data) / len(data),
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "max": max(data),
    }


def _bucket(value: float) -> float:
    """Bucket lower bound: 0.1 below 20, 1 below 1000, 10 above (same unit as value)."""
    if value < 20:
        return math.floor(value * 10) / 10
    if value < 1000:
        return float(math.floor(value))
    return float(math.floor(value / 10) * 10)


class Histogram:
    """Counts of non-negative values in buckets fine enough for millisecond timings.

    Precision: 0.1 below 20, 1 below 1000, 10 above (in the values' unit).
    """

    def __init__(self) -> None:
        self.counts: dict[float, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        """Count one value (negative values count as 0)."""
        value = max(0.0, value)
        key = _bucket(value)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    def extend(self, values: Iterable[float]) -> None:
        """Count every value of ``values``."""
        for value in values:
            self.add(value)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this one."""
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The bucket bound at or below which a fraction ``q`` (0..1) of the values lie."""
        if not self.count:
            return None
        target = q * self.count
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= target:
                return min(key, self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        """count, mean, p50, p90, p99, max (JSON-ready)."""
        if not self.count:
            return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
        return {
            "count": self.count,
            "mean": self.total / self.count,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "max": self.max,
        }


def pass_k(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Consistency as τ-bench measures it: a scenario passes only if every one of its
    runs passed (``runs`` is its k); ``share`` is the share of scenarios that do."""
    runs: dict[str, list[bool]] = {}
    for call in calls:
        if call.get("refused") is None:
            runs.setdefault(str(call["scenario"]), []).append(bool(call["passed"]))
    scenarios = {
        name: {"runs": len(r), "passed": sum(r), "pass_k": all(r)} for name, r in runs.items()
    }
    share = (
        sum(1 for v in scenarios.values() if v["pass_k"]) / len(scenarios) if scenarios else None
    )
    return {"share": share, "scenarios": scenarios}
