"""The four operational questions, answered from the SQLite event store.

1. ``failures``: failure rate by provider and stage now (a window) and in the
   window before — first attempts (before any failover) and calls that failed.
2. ``cost``: cost per call and per converted call (outcome ``completed``), this
   week against last week, by provider. Each ``ProviderAttempted`` event carries
   ``data.cost_usd`` (from the price table); the call driver also sums them into
   its call row (``data.cost_usd_by_provider``), which is what this reads: one
   row per call instead of every attempt.
3. ``last_failed``: the last failed calls with their event sequence and the first
   failing stage marked.
4. ``halve``: failure causes — the first failing (stage, provider, error class)
   of each failed call — ranked by calls explained, the smallest set whose
   removal halves the failure rate, and the configuration change for each.

All functions take ``now_s`` (Unix seconds) so answers are reproducible.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WEEK_S = 7 * 24 * 3600.0


def connect(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an event store file."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@dataclass(frozen=True)
class ProviderFailures:
    """Attempt failures of one provider in one stage during a window."""

    stage: str
    provider: str
    attempts: int
    failed: int
    first_attempts: int
    first_failed: int

    @property
    def failure_rate(self) -> float:
        return self.failed / self.attempts if self.attempts else 0.0

    @property
    def first_attempt_failure_rate(self) -> float:
        return self.first_failed / self.first_attempts if self.first_attempts else 0.0


@dataclass(frozen=True)
class WindowFailures:
    """Failures in one window ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    calls: int
    failed_calls: int
    providers: list[ProviderFailures]

    @property
    def call_failure_rate(self) -> float:
        return self.failed_calls / self.calls if self.calls else 0.0


def failures(db: sqlite3.Connection, *, window_s: float, now_s: float) -> dict[str, Any]:
    """Question 1: this window and the previous one."""
    current = _window_failures(db, now_s - window_s, now_s)
    previous = _window_failures(db, now_s - 2 * window_s, now_s - window_s)
    return {"window_s": window_s, "now": _as_dict(current), "previous": _as_dict(previous)}


def _as_dict(window: WindowFailures) -> dict[str, Any]:
    body = asdict(window)
    body["call_failure_rate"] = window.call_failure_rate
    body["providers"] = [
        {
            **asdict(p),
            "failure_rate": p.failure_rate,
            "first_attempt_failure_rate": p.first_attempt_failure_rate,
        }
        for p in window.providers
    ]
    return body


def _window_failures(db: sqlite3.Connection, start_s: float, end_s: float) -> WindowFailures:
    calls, failed = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(outcome = 'failed'), 0) FROM calls"
        " WHERE started_at >= ? AND started_at < ?",
        (start_s, end_s),
    ).fetchone()
    rows = db.execute(
        "SELECT stage, provider, COUNT(*),"
        " SUM(outcome = 'error'),"
        " SUM(json_extract(data, '$.attempt') = 1),"
        " SUM(json_extract(data, '$.attempt') = 1 AND outcome = 'error')"
        " FROM events WHERE kind = 'ProviderAttempted' AND at_wall >= ? AND at_wall < ?"
        " AND outcome IN ('ok', 'error')"
        " GROUP BY stage, provider ORDER BY stage, provider",
        (start_s, end_s),
    ).fetchall()
    providers = [ProviderFailures(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    return WindowFailures(start_s, end_s, calls, failed, providers)


def cost(db: sqlite3.Connection, *, weeks: int, now_s: float) -> dict[str, Any]:
    """Question 2: per week (newest first), cost per call and per converted call."""
    out = []
    for index in range(weeks):
        end = now_s - index * WEEK_S
        start = end - WEEK_S
        calls, converted = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(outcome = 'completed'), 0) FROM calls"
            " WHERE started_at >= ? AND started_at < ?",
            (start, end),
        ).fetchone()
        by_provider: dict[str, float] = {}
        for (data,) in db.execute(
            "SELECT json_extract(data, '$.cost_usd_by_provider') FROM calls"
            " WHERE started_at >= ? AND started_at < ?",
            (start, end),
        ):
            for provider, amount in json.loads(data or "{}").items():
                by_provider[provider] = by_provider.get(provider, 0.0) + amount
        total = float(sum(by_provider.values()))
        out.append(
            {
                "start": start,
                "end": end,
                "calls": calls,
                "converted_calls": converted,
                "cost_usd": total,
                "cost_per_call_usd": total / calls if calls else None,
                "cost_per_converted_call_usd": total / converted if converted else None,
                "by_provider_usd": by_provider,
            }
        )
    return {"weeks": out}


def last_failed(db: sqlite3.Connection, *, n: int) -> list[dict[str, Any]]:
    """Question 3: the last ``n`` failed calls with events and first failing stage."""
    calls = db.execute(
        "SELECT call_id, started_at, error FROM calls WHERE outcome = 'failed'"
        " ORDER BY started_at DESC LIMIT ?",
        (n,),
    ).fetchall()
    result = []
    for call_id, started_at, error in calls:
        events = [
            {
                "seq": r[0],
                "kind": r[1],
                "at_wall": r[2],
                "stage": r[3],
                "provider": r[4],
                "outcome": r[5],
                "error_class": r[6],
                "data": json.loads(r[7]),
            }
            for r in db.execute(
                "SELECT seq, kind, at_wall, stage, provider, outcome, error_class, data"
                " FROM events WHERE call_id = ? ORDER BY seq",
                (call_id,),
            )
        ]
        first = next((e for e in events if _is_failure(e)), None)
        for event in events:
            event["first_failure"] = event is first
        result.append(
            {
                "call_id": call_id,
                "started_at": started_at,
                "error": error,
                "first_failing_stage": first["stage"] if first else None,
                "events": events,
            }
        )
    return result


def _is_failure(event: dict[str, Any]) -> bool:
    return event["outcome"] == "error" or event["kind"] == "ProtocolErrorReceived"


@dataclass
class Cause:
    """One failure cause and the failed calls it explains."""

    stage: str | None
    provider: str | None
    error_class: str | None
    calls: int = 0
    share: float = 0.0
    fix: str = ""
    call_ids: list[str] = field(default_factory=list)


def halve(db: sqlite3.Connection, *, window_s: float, now_s: float) -> dict[str, Any]:
    """Question 4: causes ranked, and the smallest set that halves the failure rate."""
    failed = last_failed_in_window(db, now_s - window_s, now_s)
    total_calls = db.execute(
        "SELECT COUNT(*) FROM calls WHERE started_at >= ? AND started_at < ?",
        (now_s - window_s, now_s),
    ).fetchone()[0]
    causes: dict[tuple[str | None, str | None, str | None], Cause] = {}
    for call_id, first in failed:
        key = (first["stage"], first["provider"], first["error_class"]) if first else (None,) * 3
        cause = causes.setdefault(key, Cause(*key))
        cause.calls += 1
        cause.call_ids.append(call_id)
    ranked = sorted(causes.values(), key=lambda c: (-c.calls, str(c.stage), str(c.provider)))
    chosen: list[Cause] = []
    removed = 0
    for cause in ranked:
        cause.share = cause.calls / len(failed) if failed else 0.0
        cause.fix = _fix(cause)
        if removed * 2 < len(failed):
            chosen.append(cause)
            removed += cause.calls
    rate = len(failed) / total_calls if total_calls else 0.0
    return {
        "window_s": window_s,
        "calls": total_calls,
        "failed_calls": len(failed),
        "failure_rate": rate,
        "failure_rate_after": (len(failed) - removed) / total_calls if total_calls else 0.0,
        "causes": [_cause_dict(c) for c in ranked],
        "halving_set": [_cause_dict(c) for c in chosen],
    }


def _cause_dict(cause: Cause) -> dict[str, Any]:
    body = asdict(cause)
    body.pop("call_ids")
    return body


def last_failed_in_window(
    db: sqlite3.Connection, start_s: float, end_s: float
) -> list[tuple[str, dict[str, Any] | None]]:
    """(call id, its first failure event or None) for failed calls in the window."""
    out = []
    for (call_id,) in db.execute(
        "SELECT call_id FROM calls WHERE outcome = 'failed' AND started_at >= ? AND started_at < ?",
        (start_s, end_s),
    ).fetchall():
        row = db.execute(
            "SELECT stage, provider, error_class FROM events WHERE call_id = ?"
            " AND (outcome = 'error' OR kind = 'ProtocolErrorReceived') ORDER BY seq LIMIT 1",
            (call_id,),
        ).fetchone()
        first = {"stage": row[0], "provider": row[1], "error_class": row[2]} if row else None
        out.append((call_id, first))
    return out


def _fix(cause: Cause) -> str:
    share = f"{cause.share:.0%}"
    if cause.stage in ("tts", "stt", "llm") and cause.error_class == "timeout":
        return (
            f"{cause.provider} timed out in {share} of failed calls: add a fallback "
            f"{cause.stage.upper()} provider after it or lower its first-byte deadline"
        )
    if cause.stage in ("tts", "stt", "llm") and cause.error_class == "permanent":
        return (
            f"{cause.provider} refused requests (4xx) in {share} of failed calls: "
            "check its credentials and request settings"
        )
    if cause.stage in ("tts", "stt", "llm"):
        return (
            f"add a fallback {cause.stage.upper()} provider for {cause.provider}, "
            f"which caused {share} of failures"
        )
    if cause.stage == "telephony":
        return f"the media stream peer sent invalid messages in {share} of failed calls"
    return f"{share} of failed calls have no failing event: look at their timelines"
