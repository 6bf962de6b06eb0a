"""The handoff SLA: time from a handoff request to its outcome, per outcome.

Read from ``CallTransferred`` events (``server/handoff.py`` records one per
transfer, ``latency_s`` = request to outcome on the server's clock), on SQLite
or PostgreSQL through ``SQLReader.fetch``.
"""

from __future__ import annotations

from typing import Any

from voicerail.events.model import EventKind
from voicerail.events.store import SQLReader


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def handoff_sla(db: SQLReader, *, window_s: float, now_s: float) -> dict[str, Any]:
    """Transfers in the window by outcome, with the time to that outcome.

    Returns:
        ``{"window_s", "transfers", "answered_rate", "outcomes": [{"outcome",
        "transfers", "p50_s", "p90_s", "max_s"}]}``, most frequent outcome first;
        ``answered_rate`` is None without transfers.

    Raises:
        StoreError: the store failed.
    """
    rows = db.fetch(
        "SELECT outcome, latency_s FROM events WHERE kind = ? AND at_wall >= ?",
        (str(EventKind.CALL_TRANSFERRED), now_s - window_s),
    )
    by_outcome: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for outcome, latency_s in rows:
        name = str(outcome or "unknown")
        counts[name] = counts.get(name, 0) + 1
        if latency_s is not None:
            by_outcome.setdefault(name, []).append(float(latency_s))
    total = sum(counts.values())
    outcomes = []
    for name in sorted(counts, key=lambda n: (-counts[n], n)):
        ordered = sorted(by_outcome.get(name, []))
        outcomes.append(
            {
                "outcome": name,
                "transfers": counts[name],
                "p50_s": _quantile(ordered, 0.5),
                "p90_s": _quantile(ordered, 0.9),
                "max_s": ordered[-1] if ordered else None,
            }
        )
    return {
        "window_s": window_s,
        "transfers": total,
        "answered_rate": counts.get("answered", 0) / total if total else None,
        "outcomes": outcomes,
    }


def format_sla(answer: dict[str, Any]) -> str:
    """The answer as terminal text."""
    if not answer["transfers"]:
        return f"no transfers in the last {answer['window_s'] / 86400:g} days"
    lines = [
        f"{answer['transfers']} transfers, {answer['answered_rate']:.0%} answered by a human",
        f"{'outcome':<16}{'transfers':>10}{'p50 s':>9}{'p90 s':>9}{'max s':>9}",
    ]
    for o in answer["outcomes"]:
        cells = [
            f"{o[k]:9.1f}" if o[k] is not None else f"{'-':>9}" for k in ("p50_s", "p90_s", "max_s")
        ]
        lines.append(f"{o['outcome']:<16}{o['transfers']:>10}" + "".join(cells))
    return "\n".join(lines)
