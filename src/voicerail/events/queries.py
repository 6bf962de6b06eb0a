"""The read queries behind ``voicerail ops`` and the dashboard, for SQLite and PostgreSQL.

Rules:

1. One SQL text per query, written with ``?`` placeholders and portable SQL
   (``CASE`` instead of boolean sums, no ``FILTER``, no ``NULLS FIRST``); only
   JSON field access differs by dialect (:func:`json_number`).
2. Every query is bounded by an index of ``store.INDEXES`` or a primary key:
   calls by ``started_at`` (and ``outcome``), events by ``(kind, at_wall)``,
   ``(provider, at_wall)`` or ``(call_id, seq)``, costs by ``(call_id, provider)``.
3. Results are plain tuples and dataclasses, with numbers normalized
   (``int`` counts, ``float`` sums) so both databases give equal answers; the
   arithmetic of the answers lives in ``voicerail.ops.reports``.
4. Windows are half-open, ``[start_s, end_s)``, in Unix seconds. Calls belong
   to the window they started in; attempts to the window they ended in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voicerail.events.model import Event, EventKind
from voicerail.events.rollups import (
    LATENCY_BIN_UPPER_S,
    TrailEvent,
    bucket_of,
    cause_of,
    json_number_sql,
    key_value,
    latency_bin,
    rollups_ready,
)
from voicerail.events.store import CallRecord, SQLReader, call_from_row, event_from_row

ATTEMPTED = str(EventKind.PROVIDER_ATTEMPTED)
PROTOCOL_ERROR = str(EventKind.PROTOCOL_ERROR)


def json_number(db: SQLReader, column: str, key: str) -> str:
    """SQL for the number at ``column.key`` (NULL when absent or not a number).

    ``key`` and ``column`` are trusted identifiers from this module, never user input.
    """
    return json_number_sql(db.dialect, column, key)


def _int(value: Any) -> int:
    return int(value or 0)


@dataclass(frozen=True)
class CallCounts:
    """Calls that started in a window, by outcome."""

    calls: int
    failed: int
    completed: int


def call_counts(db: SQLReader, start_s: float, end_s: float) -> CallCounts:
    """Calls started in ``[start_s, end_s)``: all, failed, completed (converted)."""
    [row] = db.fetch(
        "SELECT COUNT(*),"
        " SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN outcome = 'completed' THEN 1 ELSE 0 END)"
        " FROM calls WHERE started_at >= ? AND started_at < ?",
        (start_s, end_s),
    )
    return CallCounts(_int(row[0]), _int(row[1]), _int(row[2]))


def refused_count(db: SQLReader, start_s: float, end_s: float) -> int:
    """Calls refused beyond capacity (``CallRefused`` events) in ``[start_s, end_s)``."""
    [row] = db.fetch(
        "SELECT COUNT(*) FROM events WHERE kind = 'CallRefused' AND at_wall >= ? AND at_wall < ?",
        (start_s, end_s),
    )
    return _int(row[0])


@dataclass(frozen=True)
class AttemptCounts:
    """Finished attempts (``ok`` or ``error``) of one provider in one stage.

    Attributes:
        first_attempts: attempts numbered 1 (before any failover, retry or hedge).
        calls: distinct calls with such an attempt.
    """

    stage: str
    provider: str
    attempts: int
    failed: int
    first_attempts: int
    first_failed: int
    calls: int


def attempt_counts(db: SQLReader, start_s: float, end_s: float) -> list[AttemptCounts]:
    """Attempts that ended in the window, by (stage, provider), sorted by both; a scan
    of the events (the rollups' reference, ``events/rollup_reads.py``).

    ``cancelled`` and ``hedge_lost`` attempts are left out: neither is a result of
    the provider. So are stage-less summary events (the driver's "no provider left").
    ``calls`` counts the calls whose first finished attempt with the provider in
    the stage ended in the window (``rollups.py`` rule 3).
    """
    first = f"{json_number(db, 'data', 'attempt')} = 1"
    finished = (
        "kind = ? AND outcome IN ('ok', 'error') AND stage IS NOT NULL AND provider IS NOT NULL"
    )
    rows = db.fetch(
        "SELECT stage, provider, COUNT(*),"
        " SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN {first} THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN {first} AND outcome = 'error' THEN 1 ELSE 0 END)"
        f" FROM events WHERE {finished} AND at_wall >= ? AND at_wall < ?"
        " GROUP BY stage, provider",
        (ATTEMPTED, start_s, end_s),
    )
    calls = {
        (r[0], r[1]): _int(r[2])
        for r in db.fetch(
            "SELECT stage, provider, COUNT(*) FROM (SELECT stage, provider, MIN(at_wall) AS m"
            f" FROM events WHERE {finished} GROUP BY call_id, stage, provider) f"
            " WHERE m >= ? AND m < ? GROUP BY stage, provider",
            (ATTEMPTED, start_s, end_s),
        )
    }
    counts = [
        AttemptCounts(
            r[0], r[1], _int(r[2]), _int(r[3]), _int(r[4]), _int(r[5]), calls.get((r[0], r[1]), 0)
        )
        for r in rows
    ]
    return sorted(counts, key=lambda c: (c.stage, c.provider))


def failure_trails(db: SQLReader, start_s: float, end_s: float) -> dict[str, list[TrailEvent]]:
    """For each failed call started in the window, its ``ok``/``error`` events in order.

    Protocol errors are included whatever their outcome. Calls without such events
    map to an empty list.
    """
    trails: dict[str, list[TrailEvent]] = {
        call_id: []
        for (call_id,) in db.fetch(
            "SELECT call_id FROM calls WHERE outcome = 'failed'"
            " AND started_at >= ? AND started_at < ?",
            (start_s, end_s),
        )
    }
    rows = db.fetch(
        "SELECT e.call_id, e.seq, e.kind, e.stage, e.provider, e.error_class, e.outcome"
        " FROM calls c JOIN events e ON e.call_id = c.call_id"
        " WHERE c.outcome = 'failed' AND c.started_at >= ? AND c.started_at < ?"
        " AND (e.outcome IN ('ok', 'error') OR e.kind = ?)"
        " ORDER BY e.call_id, e.seq",
        (start_s, end_s, PROTOCOL_ERROR),
    )
    for r in rows:
        trails.setdefault(r[0], []).append(TrailEvent(int(r[1]), r[2], r[3], r[4], r[5], r[6]))
    return trails


@dataclass(frozen=True)
class ProviderCost:
    """What one provider cost over the calls of a window."""

    provider: str
    cost_usd: float
    priced_attempts: int


def provider_costs(db: SQLReader, start_s: float, end_s: float) -> list[ProviderCost]:
    """``data.cost_usd`` of ``ProviderAttempted`` events summed by provider, over the
    calls started in the window; sorted by provider.

    Reads the stores' ``call_costs`` rollup of those fields (``store.py`` rule 4):
    one row per call and provider. Sums are rounded to 1e-9 USD so that the two
    databases' summation orders give equal figures."""
    rows = db.fetch(
        "SELECT cc.provider, SUM(cc.cost_usd), SUM(cc.priced_attempts)"
        " FROM calls c JOIN call_costs cc ON cc.call_id = c.call_id"
        " WHERE c.started_at >= ? AND c.started_at < ? GROUP BY cc.provider",
        (start_s, end_s),
    )
    costs = [ProviderCost(r[0], round(float(r[1] or 0.0), 9), _int(r[2])) for r in rows]
    return sorted((c for c in costs if c.priced_attempts), key=lambda c: c.provider)


def last_failed_calls(db: SQLReader, n: int) -> list[CallRecord]:
    """The ``n`` failed calls that started last, newest first."""
    rows = db.fetch(
        "SELECT * FROM calls WHERE outcome = 'failed' ORDER BY started_at DESC, call_id LIMIT ?",
        (n,),
    )
    return [call_from_row(r) for r in rows]


def events_of(db: SQLReader, call_ids: Sequence[str]) -> dict[str, list[Event]]:
    """The events of each call, in order (calls without events map to ``[]``)."""
    result: dict[str, list[Event]] = {call_id: [] for call_id in call_ids}
    if not call_ids:
        return result
    marks = ",".join("?" for _ in call_ids)
    rows = db.fetch(
        f"SELECT * FROM events WHERE call_id IN ({marks}) ORDER BY call_id, seq",
        tuple(call_ids),
    )
    for row in rows:
        event = event_from_row(row)
        result[event.call_id].append(event)
    return result


@dataclass(frozen=True)
class CallFilter:
    """Filters of the dashboard's call list (all optional, combined with AND).

    Attributes:
        outcome: ``completed`` / ``handoff`` / ``abandoned`` / ``failed``, or
            ``in_progress`` for calls without an end.
        provider: calls with a finished (``ok``/``error``) attempt of this provider;
            on a store without rollups, calls with any attempt of it since ``since_s``.
        since_s: calls that started at or after this Unix time.
        until_s: calls that started before this Unix time.
        call_id: a call id or telephony call sid prefix.
        limit: most rows returned.
    """

    outcome: str | None = None
    provider: str | None = None
    since_s: float | None = None
    until_s: float | None = None
    call_id: str | None = None
    limit: int = 100


def find_calls(db: SQLReader, where: CallFilter) -> list[CallRecord]:
    """Calls matching ``where``, newest first."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.outcome == "in_progress":
        clauses.append("ended_at IS NULL")
    elif where.outcome:
        clauses.append("outcome = ?")
        args.append(where.outcome)
    if where.since_s is not None:
        clauses.append("started_at >= ?")
        args.append(where.since_s)
    if where.until_s is not None:
        clauses.append("started_at < ?")
        args.append(where.until_s)
    if where.call_id:
        # substr, not LIKE: LIKE is case-sensitive on PostgreSQL only.
        clauses.append("(substr(call_id, 1, ?) = ? OR substr(call_sid, 1, ?) = ?)")
        size = len(where.call_id)
        args += [size, where.call_id, size, where.call_id]
    if where.provider and rollups_ready(db):
        # Walks the newest calls and probes each one's facts by primary key, so the
        # cost follows ``limit``, not the history (issue 16).
        clauses.append(
            "EXISTS (SELECT 1 FROM call_attempt_firsts f"
            " WHERE f.call_id = calls.call_id AND f.provider = ?)"
        )
        args.append(where.provider)
    elif where.provider:
        inner = "SELECT call_id FROM events WHERE provider = ? AND kind = ?"
        args += [where.provider, ATTEMPTED]
        if where.since_s is not None:
            inner += " AND at_wall >= ?"
            args.append(where.since_s)
        clauses.append(f"call_id IN ({inner})")
    sql = "SELECT * FROM calls"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = db.fetch(sql + " ORDER BY started_at DESC, call_id LIMIT ?", (*args, where.limit))
    return [call_from_row(r) for r in rows]


@dataclass(frozen=True)
class AttemptSample:
    """One finished attempt, for latency percentiles."""

    stage: str
    provider: str
    outcome: str
    latency_s: float | None


def attempt_samples(db: SQLReader, start_s: float, end_s: float) -> list[AttemptSample]:
    """Every ``ok``/``error`` attempt that ended in the window (for provider health)."""
    rows = db.fetch(
        "SELECT stage, provider, outcome, latency_s FROM events"
        " WHERE kind = ? AND at_wall >= ? AND at_wall < ? AND outcome IN ('ok', 'error')"
        " AND stage IS NOT NULL AND provider IS NOT NULL",
        (ATTEMPTED, start_s, end_s),
    )
    return [AttemptSample(r[0], r[1], r[2], r[3]) for r in rows]


def providers_seen(db: SQLReader, since_s: float) -> list[str]:
    """Providers with a finished attempt since ``since_s`` (from the day rollups: since
    the start of that UTC day), sorted."""
    if rollups_ready(db):
        rows = db.fetch(
            "SELECT DISTINCT provider FROM rollup_attempts"
            " WHERE grain_s = 86400 AND bucket_s >= ? AND attempts > 0",
            (bucket_of(since_s, 86400),),
        )
    else:
        rows = db.fetch(
            "SELECT DISTINCT provider FROM events WHERE kind = ? AND at_wall >= ?"
            " AND provider IS NOT NULL",
            (ATTEMPTED, since_s),
        )
    return sorted(r[0] for r in rows)


@dataclass(frozen=True)
class CauseCount:
    """Failed calls that started in a window with one cause (``ops/reports.py`` rule 2).

    Attributes:
        stage, provider, error_class, kind: the first failure's; all None for failed
            calls without one.
        calls: failed calls with this cause.
        fallback_tried_calls: of them, calls where another provider of the stage ran.
        example_call_ids: the newest three (by start, then call id, descending).
    """

    stage: str | None
    provider: str | None
    error_class: str | None
    kind: str | None
    calls: int
    fallback_tried_calls: int
    example_call_ids: tuple[str, ...]


def cause_counts(db: SQLReader, start_s: float, end_s: float) -> list[CauseCount]:
    """Failed calls started in the window, by cause; a scan of their events (the
    rollups' reference). Sorted by cause."""
    started = dict(
        db.fetch(
            "SELECT call_id, started_at FROM calls WHERE outcome = 'failed'"
            " AND started_at >= ? AND started_at < ?",
            (start_s, end_s),
        )
    )
    groups: dict[tuple[str, str, str, str], list[tuple[float, str, bool]]] = {}
    for call_id, trail in failure_trails(db, start_s, end_s).items():
        key, fallback = cause_of(trail)
        groups.setdefault(key, []).append((float(started[call_id]), call_id, fallback))
    out = []
    for key, members in sorted(groups.items()):
        newest = sorted(members, reverse=True)[:3]
        out.append(
            cause_count(key, len(members), sum(m[2] for m in members), tuple(m[1] for m in newest))
        )
    return out


def cause_count(
    key: Sequence[str], calls: int, fallback_tried_calls: int, example_call_ids: tuple[str, ...]
) -> CauseCount:
    """A :class:`CauseCount` from a stored cause key (``''`` for None)."""
    stage, provider, error_class, kind = (key_value(k) for k in key)
    return CauseCount(
        stage, provider, error_class, kind, calls, fallback_tried_calls, example_call_ids
    )


def latency_histograms(
    db: SQLReader, start_s: float, end_s: float
) -> dict[tuple[str, str], dict[int, int]]:
    """Bucket counts (``rollups.LATENCY_BIN_UPPER_S``) of ``ok`` attempts' latencies
    that ended in the window, by (stage, provider); a scan (the rollups' reference)."""
    hists: dict[tuple[str, str], dict[int, int]] = {}
    for sample in attempt_samples(db, start_s, end_s):
        if sample.outcome != "ok" or not sample.latency_s:
            continue
        hist = hists.setdefault((sample.stage, sample.provider), {})
        index = latency_bin(sample.latency_s)
        hist[index] = hist.get(index, 0) + 1
    return hists


def histogram_percentile(hist: dict[int, int], fraction: float) -> float | None:
    """Nearest-rank percentile of a latency histogram: the upper bound (seconds) of the
    bucket holding the rank, the last finite bound for the open bucket; None if empty."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, -(-total * fraction // 1))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return LATENCY_BIN_UPPER_S[min(index, len(LATENCY_BIN_UPPER_S) - 2)]
    return None  # unreachable: the ranks stop at total
