"""The four operational questions, answered from any event store that is a ``SQLReader``.

1. :func:`failures`: failure rate by provider and stage in a window and in the
   window before: attempts, first attempts (before any failover, retry or hedge),
   and failed calls attributed to the provider whose failure ended them.
2. :func:`cost`: cost per call and per converted call (outcome ``completed``),
   week by week (newest first), by provider. Cost is the sum of ``data.cost_usd``
   on ``ProviderAttempted`` events (set by the router from the price table) of the
   calls that started in the week; cost per converted call is the week's whole
   cost over its converted calls (failed calls are part of what a conversion costs).
3. :func:`last_failed`: the last failed calls, each with its event sequence and
   the first failing event marked.
4. :func:`halve`: failure causes ranked by the failed calls they explain, the
   smallest set whose removal halves the failure rate, and the configuration
   change that addresses each.

Rules:

1. A call's *first failure* is its first failing event (``outcome == "error"``, or a
   protocol error) that was not recovered: no later successful attempt or
   transcript in the same stage. A timeout the fallback provider covered is
   not why the call failed. A failed call without one is *unexplained*.
2. A call's *cause* is its first failure's (stage, provider, error class); each
   failed call has exactly one cause, so taking causes largest first gives the
   smallest set that explains half of the failed calls.
3. Every answer is a JSON-ready dict without personal data (``pii`` never leaves
   the store here) and depends only on the store and ``now_s``.
4. Answers read the rollups (``events/rollup_reads.py``) so their cost does not
   grow with history; ``scan=True`` (or a store without rollups) computes the
   same answer by scanning events, which the tests compare them with.
5. Windows are whole minutes and end with the current one, unfinished
   (:func:`window_end`): "the last 15 minutes" asked at 12:00:05 is
   11:46:00 to 12:01:00. So every window is made of whole rollup buckets, and an
   answer costs the same whatever the calls per minute (the rollups' minute
   row of the current minute holds every event written so far).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from voicerail.events import queries as q
from voicerail.events import rollup_reads
from voicerail.events.model import Event
from voicerail.events.redaction import scrub_text
from voicerail.events.rollups import first_failure, rollups_ready
from voicerail.events.store import SQLReader

__all__ = ["cost", "failures", "first_failure", "halve", "last_failed", "provider_health"]

WEEK_S = 7 * 24 * 3600.0


def window_end(now_s: float) -> float:
    """Rule 5: where windows asked at ``now_s`` end: the first minute boundary at or
    after it (Unix seconds)."""
    return float(math.ceil(now_s / 60) * 60)


def whole_minutes(window_s: float) -> float:
    """Rule 5: ``window_s`` rounded up to whole minutes (at least one)."""
    return float(max(1, math.ceil(window_s / 60)) * 60)


def _source(db: SQLReader, scan: bool) -> Any:
    """Rule 4: the rollup reads, or the event scans they are checked against."""
    return q if scan or not rollups_ready(db) else rollup_reads


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# -- 1. failures -----------------------------------------------------------------


def failures(db: SQLReader, *, window_s: float, now_s: float, scan: bool = False) -> dict[str, Any]:
    """Question 1: failure rates by provider and stage, this window and the previous."""
    src = _source(db, scan)
    end, span = window_end(now_s), whole_minutes(window_s)
    now = _window_failures(src, db, end - span, end)
    previous = _window_failures(src, db, end - 2 * span, end - span)
    before = {(p["stage"], p["provider"]): p for p in previous["providers"]}
    for row in now["providers"]:
        old = before.get((row["stage"], row["provider"]))
        row["previous_first_attempt_failure_rate"] = (
            old["first_attempt_failure_rate"] if old else None
        )
        row["previous_call_failure_rate"] = old["call_failure_rate"] if old else None
    return {"window_s": window_s, "now_s": now_s, "now": now, "previous": previous}


def _window_failures(src: Any, db: SQLReader, start_s: float, end_s: float) -> dict[str, Any]:
    counts = src.call_counts(db, start_s, end_s)
    failed_by: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for cause in src.cause_counts(db, start_s, end_s):
        failed_by[(cause.stage, cause.provider)] += cause.calls
    providers = []
    for a in src.attempt_counts(db, start_s, end_s):
        failed_calls = failed_by.get((a.stage, a.provider), 0)
        providers.append(
            {
                **asdict(a),
                "failure_rate": _rate(a.failed, a.attempts),
                "first_attempt_failure_rate": _rate(a.first_failed, a.first_attempts),
                "failed_calls": failed_calls,
                "call_failure_rate": _rate(failed_calls, a.calls),
            }
        )
    return {
        "start_s": start_s,
        "end_s": end_s,
        "calls": counts.calls,
        "failed_calls": counts.failed,
        "call_failure_rate": _rate(counts.failed, counts.calls),
        # Refused beyond capacity: never started, so not in ``calls`` (session/load.py).
        "refused_calls": src.refused_count(db, start_s, end_s),
        "providers": providers,
    }


# -- 2. cost ---------------------------------------------------------------------


def cost(db: SQLReader, *, weeks: int, now_s: float, scan: bool = False) -> dict[str, Any]:
    """Question 2: per week (newest first), cost per call and per converted call."""
    src = _source(db, scan)
    out: list[dict[str, Any]] = []
    for index in range(weeks):
        end = window_end(now_s) - index * WEEK_S
        start = end - WEEK_S
        counts = src.call_counts(db, start, end)
        by_provider = src.provider_costs(db, start, end)
        total = round(sum(p.cost_usd for p in by_provider), 9)
        out.append(
            {
                "start_s": start,
                "end_s": end,
                "calls": counts.calls,
                "converted_calls": counts.completed,
                "cost_usd": total,
                "cost_per_call_usd": total / counts.calls if counts.calls else None,
                "cost_per_converted_call_usd": (
                    total / counts.completed if counts.completed else None
                ),
                "by_provider": [
                    {
                        "provider": p.provider,
                        "cost_usd": p.cost_usd,
                        "cost_per_call_usd": p.cost_usd / counts.calls if counts.calls else None,
                        "share": _rate_f(p.cost_usd, total),
                    }
                    for p in by_provider
                ],
            }
        )
    for this, last in itertools.pairwise(out):
        this["change_per_converted_call"] = _change(
            this["cost_per_converted_call_usd"], last["cost_per_converted_call_usd"]
        )
    return {"now_s": now_s, "weeks": out}


def _rate_f(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _change(new: float | None, old: float | None) -> float | None:
    """Relative change, ``+0.25`` for 25% more; None when either side is missing."""
    if new is None or old is None or old == 0:
        return None
    return new / old - 1.0


# -- 3. last failed calls ----------------------------------------------------------


def last_failed(db: SQLReader, *, n: int) -> list[dict[str, Any]]:
    """Question 3: the last ``n`` failed calls, events in order, first failure marked."""
    calls = q.last_failed_calls(db, n)
    events = q.events_of(db, [c.call_id for c in calls])
    result = []
    for call in calls:
        timeline = events[call.call_id]
        index = first_failure(timeline)
        t0 = timeline[0].at_mono if timeline else 0.0
        rows = []
        for i, e in enumerate(timeline):
            row = e.to_dict()
            row.pop("pii")  # rule 3
            row["t_s"] = e.at_mono - t0
            row["first_failure"] = i == index
            rows.append(row)
        first = timeline[index] if index is not None else None
        result.append(
            {
                "call_id": call.call_id,
                "started_at": call.started_at,
                "ended_at": call.ended_at,
                "error": scrub_text(call.error) if call.error else None,
                "first_failing_stage": str(first.stage) if first and first.stage else None,
                "first_failure": _cause_key(first) if first else None,
                "events": rows,
            }
        )
    return result


def _cause_key(e: Event | q.TrailEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": str(e.kind),
        "stage": str(e.stage) if e.stage else None,
        "provider": e.provider,
        "error_class": e.error_class,
    }


# -- 4. halve ----------------------------------------------------------------------


@dataclass
class Cause:
    """One failure cause and the failed calls it explains (rule 2)."""

    stage: str | None
    provider: str | None
    error_class: str | None
    kind: str | None
    calls: int = 0
    share: float = 0.0
    fallback_tried: bool = False
    fix: str = ""
    config_change: str = ""
    example_call_ids: list[str] = field(default_factory=list)


def halve(db: SQLReader, *, window_s: float, now_s: float, scan: bool = False) -> dict[str, Any]:
    """Question 4: causes ranked, and the smallest set that halves the failure rate."""
    src = _source(db, scan)
    end_s = window_end(now_s)
    start_s = end_s - whole_minutes(window_s)
    counts = src.call_counts(db, start_s, end_s)
    causes = [
        Cause(
            c.stage,
            c.provider,
            c.error_class,
            c.kind,
            calls=c.calls,
            fallback_tried=c.fallback_tried_calls > 0,
            example_call_ids=list(c.example_call_ids),
        )
        for c in src.cause_counts(db, start_s, end_s)
    ]
    failed = sum(c.calls for c in causes)
    ranked = sorted(
        causes,
        key=lambda c: (-c.calls, str(c.stage), str(c.provider), str(c.kind), str(c.error_class)),
    )
    chosen: list[Cause] = []
    removed = 0
    for cause in ranked:
        cause.share = _rate(cause.calls, failed)
        cause.fix, cause.config_change = fix_for(cause)
        if removed * 2 < failed:
            chosen.append(cause)
            removed += cause.calls
    return {
        "window_s": window_s,
        "now_s": now_s,
        "start_s": start_s,
        "end_s": end_s,
        "calls": counts.calls,
        "failed_calls": failed,
        "failure_rate": _rate(failed, counts.calls),
        "failure_rate_after": _rate(failed - removed, counts.calls),
        "causes": [asdict(c) for c in ranked],
        "halving_set": [asdict(c) for c in chosen],
    }


def fix_for(cause: Cause) -> tuple[str, str]:
    """The configuration change that addresses ``cause``: (sentence, config key path)."""
    share = f"{cause.share:.0%}"
    stage = cause.stage or ""
    name = stage.upper()
    if cause.kind == q.PROTOCOL_ERROR or (stage == "telephony" and cause.provider is None):
        return (
            f"the media stream peer sent invalid messages in {share} of failed calls: check the "
            "telephony provider's stream settings (track, encoding) against the TwiML",
            "server.public_url / telephony stream settings",
        )
    if stage in ("stt", "llm", "tts") and cause.provider:
        chain = f"routing.{stage}.providers"
        if cause.error_class == "permanent":
            return (
                f"{cause.provider} refused requests (4xx) in {share} of failed calls: check its "
                "credentials (voicerail ops credentials) and request settings",
                f"credentials.{cause.provider}",
            )
        if not cause.fallback_tried:
            return (
                f"add a fallback {name} provider after {cause.provider}, whose "
                f"{cause.error_class or 'error'}s caused {share} of failures",
                f"{chain}: [{cause.provider}, <fallback>]",
            )
        if cause.error_class == "timeout":
            return (
                f"{cause.provider} timed out and its fallback could not finish in {share} of "
                f"failed calls: lower {cause.provider}'s first-byte deadline or enable hedging "
                f"so the fallback starts earlier",
                f"routing.{stage}.ttfb_timeout_s / routing.{stage}.hedge: true",
            )
        return (
            f"{cause.provider} and its fallback both failed in {share} of failed calls: add a "
            f"third {name} provider from another vendor",
            f"{chain}: [{cause.provider}, <fallback>, <another vendor>]",
        )
    if cause.provider:
        return (
            f"{cause.provider} failed with no provider left in {share} of failed calls: add a "
            "fallback provider to its chain",
            "routing.<stage>.providers",
        )
    return (
        f"{share} of failed calls have no failing event: open their timelines "
        "(voicerail ops last-failed) and the server log",
        "",
    )


# -- provider health (dashboard) -----------------------------------------------------


def provider_health(
    db: SQLReader, *, window_s: float, now_s: float, scan: bool = False
) -> list[dict[str, Any]]:
    """Per (stage, provider) over the window: attempts, error rate, p50/p95 TTFB.

    Percentiles come from the mergeable latency histograms (``events/rollups.py``
    rule 5): the upper bound of the bucket holding the rank, within 9 %.
    """
    src = _source(db, scan)
    end_s = window_end(now_s)
    start_s = end_s - whole_minutes(window_s)
    hists = src.latency_histograms(db, start_s, end_s)
    out = []
    for a in src.attempt_counts(db, start_s, end_s):
        hist = hists.get((a.stage, a.provider), {})
        out.append(
            {
                "stage": a.stage,
                "provider": a.provider,
                "attempts": a.attempts,
                "errors": a.failed,
                "error_rate": _rate(a.failed, a.attempts),
                "p50_ttfb_s": q.histogram_percentile(hist, 0.50),
                "p95_ttfb_s": q.histogram_percentile(hist, 0.95),
            }
        )
    return out


_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str) -> float:
    """``"15m"`` → 900.0; units s, m, h, d, w.

    Raises:
        ValueError: not a positive number followed by a unit.
    """
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a duration like 15m or 2h, got {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]
