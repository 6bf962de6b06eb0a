"""The handoff SLA: time from a handoff request to its outcome, per outcome.

Read from ``CallTransferred`` events (``server/handoff.py`` records one per
transfer, ``latency_s`` = from the dialog's reply that asked for a human to the
outcome, on the wall clock: for ``answered``, the time until a human answered),
on SQLite or PostgreSQL through ``SQLReader.fetch``. The service level is the
contact-centre one: the share of transfers a human answered within ``sla_s``
seconds of the request.
"""

from __future__ import annotations

from typing import Any

from voicerail.events.model import EventKind
from voicerail.events.store import SQLReader


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def handoff_sla(
    db: SQLReader, *, window_s: float, now_s: float, sla_s: float = 20.0
) -> dict[str, Any]:
    """Transfers in the window by outcome, with the time to that outcome.

    Args:
        db: the event store.
        window_s: how far back, seconds.
        now_s: now, Unix seconds.
        sla_s: the service level's answer time, seconds.

    Returns:
        ``{"window_s", "transfers", "answered_rate", "sla_s", "answered_within_sla_rate",
        "outcomes": [{"outcome", "transfers", "p50_s", "p90_s", "max_s"}]}``, most
        frequent outcome first; the rates are None without transfers.

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
    in_time = sum(1 for t in by_outcome.get("answered", []) if t <= sla_s)
    return {
        "window_s": window_s,
        "transfers": total,
        "answered_rate": counts.get("answered", 0) / total if total else None,
        "sla_s": sla_s,
        "answered_within_sla_rate": in_time / total if total else None,
        "outcomes": outcomes,
    }


def format_sla(answer: dict[str, Any]) -> str:
    """The answer as terminal text."""
    if not answer["transfers"]:
        return f"no transfers in the last {answer['window_s'] / 86400:g} days"
    lines = [
        f"{answer['transfers']} transfers, {answer['answered_rate']:.0%} answered by a human, "
        f"{answer['answered_within_sla_rate']:.0%} within {answer['sla_s']:g} s of the request",
        f"{'outcome':<16}{'transfers':>10}{'p50 s':>9}{'p90 s':>9}{'max s':>9}",
    ]
    for o in answer["outcomes"]:
        cells = [
            f"{o[k]:9.1f}" if o[k] is not None else f"{'-':>9}" for k in ("p50_s", "p90_s", "max_s")
        ]
        lines.append(f"{o['outcome']:<16}{o['transfers']:>10}" + "".join(cells))
    return "\n".join(lines)
