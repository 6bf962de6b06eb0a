"""Human review and the weekly report: ``voicerail ops review --week``, the review
sheet export and reviewers' labels.

Rules:

1. A week is the 7 days before ``now``; the report compares it with the 7 days
   before that (week over week). Calls are evaluated from their events
   (``evaluation.py`` rule 1) with the agent's success labels.
2. The report holds: calls, completion overall, by intent and by segment (the
   agent name a call was answered by), recognition accuracy where reviewers
   labelled calls (a ``misheard`` label counts as a recognition error), turn
   latency percentiles at the ear, and the top failure causes (the error a
   failed call ended with, else "not completed: <intent>", else its outcome).
3. A reviewer's label is an event, ``ReviewLabeled`` (``data.label``), appended to
   the call's events, so labels are kept, erased and retained with the call.
4. The HTML page embeds its plots as PNG data URIs (matplotlib, the ``sim``
   extra); without matplotlib it has the tables alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from voicerail.compliance.evaluation import CallEvaluation, evaluate_call
from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import SQLReader, event_from_row
from voicerail.sim.stats import percentile

WEEK_S = 7 * 86400.0
#: Labels a reviewer may give (``voicerail review label``).
LABELS = ("ok", "misheard", "wrong_intent", "bad_answer", "should_have_handed_off", "other")


def label_event(call_id: str, label: str, *, reviewer: str, at_wall: float) -> Event:
    """Rule 3: the event that records one reviewer's label.

    Raises:
        ValueError: ``label`` is not one of :data:`LABELS`.
    """
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r} (known: {', '.join(LABELS)})")
    return Event(
        call_id, EventKind.REVIEW_LABELED, at_wall, 0.0, stage=Stage.DIALOG,
        data={"label": label, "reviewer": reviewer},
    )  # fmt: skip


def window_calls(
    db: SQLReader, start_s: float, end_s: float, success: Mapping[str, str]
) -> list[tuple[str, CallEvaluation, list[Event]]]:
    """Every call started in ``[start_s, end_s)``: its agent, evaluation and events."""
    rows = db.fetch(
        "SELECT call_id, agent FROM calls WHERE started_at >= ? AND started_at < ?",
        (start_s, end_s),
    )
    agents = {str(r[0]): str(r[1]) for r in rows}
    if not agents:
        return []
    by_call: dict[str, list[Event]] = defaultdict(list)
    ids = sorted(agents)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" for _ in chunk)
        for row in db.fetch(
            f"SELECT * FROM events WHERE call_id IN ({marks}) ORDER BY call_id, seq", chunk
        ):
            by_call[str(row[0])].append(event_from_row(row))
    return [(agents[c], evaluate_call(c, by_call[c], success), by_call[c]) for c in ids]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _cause(evaluation: CallEvaluation, events: Sequence[Event]) -> str | None:
    if not evaluation.failed and evaluation.outcome != "abandoned":
        return None
    ended = next((e for e in reversed(events) if e.kind == EventKind.CALL_ENDED), None)
    if ended is not None and ended.data.get("error"):
        return str(ended.data["error"]).split(":")[0]
    if evaluation.completed is False and evaluation.intents:
        return f"not completed: {evaluation.intents[-1]}"
    return evaluation.outcome or "unknown"


def summarize_week(calls: list[tuple[str, CallEvaluation, list[Event]]]) -> dict[str, Any]:
    """Rule 2 for one window."""
    by_intent: dict[str, list[bool]] = defaultdict(list)
    by_segment: dict[str, list[bool]] = defaultdict(list)
    latencies: list[float] = []
    causes: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for agent, ev, events in calls:
        done = ev.completed is True
        if ev.completed is not None:
            by_segment[agent].append(done)
            for intent in ev.intents:
                by_intent[intent].append(done)
        latencies.extend(ev.latency_ms)
        cause = _cause(ev, events)
        if cause:
            causes[cause] += 1
        for e in events:
            if e.kind == EventKind.REVIEW_LABELED:
                labels[str(e.data.get("label"))] += 1
    judged = [ev.completed for _, ev, _ in calls if ev.completed is not None]
    labelled = sum(labels.values())
    return {
        "calls": len(calls),
        "completion": _rate(sum(1 for c in judged if c), len(judged)),
        "completion_by_intent": {k: _rate(sum(v), len(v)) for k, v in sorted(by_intent.items())},
        "completion_by_segment": {k: _rate(sum(v), len(v)) for k, v in sorted(by_segment.items())},
        "recognition_accuracy": _rate(labelled - labels["misheard"], labelled),
        "labelled_calls": labelled,
        "latency_ms": {f"p{q}": percentile(latencies, q) for q in (50, 90, 95, 99)},
        "top_failure_causes": causes.most_common(5),
    }


def weekly_review(db: SQLReader, *, now_s: float, success: Mapping[str, str]) -> dict[str, Any]:
    """Rule 1: this week, the week before, and the change in the headline figures."""
    week = summarize_week(window_calls(db, now_s - WEEK_S, now_s, success))
    before = summarize_week(window_calls(db, now_s - 2 * WEEK_S, now_s - WEEK_S, success))

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 4)

    return {
        "week": week,
        "previous_week": before,
        "change": {
            "calls": week["calls"] - before["calls"],
            "completion": delta(week["completion"], before["completion"]),
            "latency_p95_ms": delta(week["latency_ms"]["p95"], before["latency_ms"]["p95"]),
            "recognition_accuracy": delta(
                week["recognition_accuracy"], before["recognition_accuracy"]
            ),
        },
    }


def _plot(review: dict[str, Any]) -> str | None:
    """Completion by intent, this week and the one before, as a PNG data URI."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    week, before = review["week"], review["previous_week"]
    intents = sorted(set(week["completion_by_intent"]) | set(before["completion_by_intent"]))
    fig, ax = plt.subplots(figsize=(8, 3))
    xs = range(len(intents))
    ax.bar([x - 0.2 for x in xs], [before["completion_by_intent"].get(i) or 0 for i in intents],
           width=0.4, label="previous week", color="#bbbbbb")  # fmt: skip
    ax.bar([x + 0.2 for x in xs], [week["completion_by_intent"].get(i) or 0 for i in intents],
           width=0.4, label="this week", color="#3a7bd5")  # fmt: skip
    ax.set_xticks(list(xs), intents)
    ax.set_ylim(0, 1)
    ax.set_title("task completion by intent")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(review: dict[str, Any]) -> str:
    """Rule 4: the weekly report as one self-contained page."""
    week, before = review["week"], review["previous_week"]
    rows = [
        ("calls", week["calls"], before["calls"]),
        ("completion", week["completion"], before["completion"]),
        ("recognition accuracy", week["recognition_accuracy"], before["recognition_accuracy"]),
        *((f"latency {k} (ms)", v, before["latency_ms"][k]) for k, v in week["latency_ms"].items()),
        *((f"completion: {k}", v, before["completion_by_intent"].get(k))
          for k, v in week["completion_by_intent"].items()),
        *((f"segment: {k}", v, before["completion_by_segment"].get(k))
          for k, v in week["completion_by_segment"].items()),
    ]  # fmt: skip
    body = "".join(
        f"<tr><th>{html.escape(str(name))}</th><td>{_fmt(a)}</td><td>{_fmt(b)}</td></tr>"
        for name, a, b in rows
    )
    causes = "".join(
        f"<li>{html.escape(cause)}: {count}</li>" for cause, count in week["top_failure_causes"]
    )
    plot = _plot(review)
    picture = f'<img alt="completion by intent" src="{plot}">' if plot else ""
    return (
        "<!doctype html><meta charset=utf-8><title>voicerail weekly review</title>"
        "<h1>Weekly review</h1><table><tr><th></th><th>this week</th><th>previous week</th>"
        f"</tr>{body}</table><h2>Top failure causes</h2><ul>{causes or '<li>none</li>'}</ul>"
        f"{picture}"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))
