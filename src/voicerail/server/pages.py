"""HTML of the dashboard pages: layout, tables, the four answers, calls (server-rendered).

Every value is escaped here (``html.escape``); charts come from ``server/charts.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

from voicerail.events.model import EventKind
from voicerail.events.redaction import scrub_value
from voicerail.handoff.summary import handoff_from_events
from voicerail.ops import reports
from voicerail.ops.credentials import CredentialStatus
from voicerail.server.charts import bars_svg, stage_colour, waterfall_svg

OUTCOMES = ("completed", "handoff", "abandoned", "failed", "in_progress")
SINCE_CHOICES = (
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
    ("", "any time"),
)
WINDOW_CHOICES = ("15m", "1h", "24h", "7d")


# -- formatting --------------------------------------------------------------------


def _when(at_s: float | None) -> str:
    if at_s is None:
        return "—"
    return dt.datetime.fromtimestamp(at_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


def _change(value: float | None) -> str:
    if value is None:
        return ""
    arrow = "▲" if value > 0 else "▼" if value < 0 else "="
    return f'<span class="change">{arrow} {abs(value):.0%}</span>'


def _table(
    headers: list[str], rows: list[list[str]], css: str = "", empty: str = "nothing in this window"
) -> str:
    """A table; cells are HTML already (escape values before)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="empty">{escape(empty)}</td></tr>'
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _stage_badge(stage: str | None) -> str:
    if not stage:
        return '<span class="badge">—</span>'
    colour = stage_colour(stage)
    return f'<span class="badge" style="background:{colour}">{escape(stage)}</span>'


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#0f172a;background:#f8fafc}
header{background:#0f172a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#cbd5e1;text-decoration:none}header a.active{color:#fff;font-weight:600}
header form{margin-left:auto}main{padding:1em 1.4em;max-width:1200px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:.8em 1em;margin:0 0 1em}
h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.05em;margin:.1em 0 .5em}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{text-align:left;padding:.25em .5em;
border-bottom:1px solid #e2e8f0;vertical-align:top}th{color:#475569;font-weight:600}
.badge{color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em;background:#94a3b8}
.empty{color:#94a3b8}.change{color:#475569;font-size:.9em}.grid{display:grid;
grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1em}.big{font-size:1.6em;font-weight:600}
.state-expiring,.state-unverified{color:#b45309}.state-expired,.state-refused,.state-missing{color:#b91c1c}
.state-ok{color:#047857}.first-failure{background:#fee2e2}.filters{display:flex;gap:.8em;
flex-wrap:wrap;align-items:end}.chosen{background:#fef9c3}code{font-size:.9em}
.caller{color:#1d4ed8}.agent{color:#047857}.muted{color:#64748b}
"""


def page(title: str, body: str, active: str) -> HTMLResponse:
    """A whole page: header with navigation, ``title``, ``body`` (HTML)."""
    nav = "".join(
        f'<a href="{href}" class="{"active" if key == active else ""}">{label}</a>'
        for key, href, label in (
            ("overview", "/dashboard", "Overview"),
            ("calls", "/dashboard/calls", "Calls"),
            ("review", "/dashboard/review", "Review"),  # compliance/review_http.py
        )
    )
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{escape(title)} · voicerail</title><style>{_CSS}</style></head><body>
<header><strong>voicerail</strong>{nav}
<form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<main><h1>{escape(title)}</h1>{body}</main></body></html>"""
    )


def error_page(message: str, status: int) -> HTMLResponse:
    """A page that says why the answer is unavailable."""
    response = page("Unavailable", f"<section><p>{escape(message)}</p></section>", "")
    response.status_code = status
    return response


# -- overview ------------------------------------------------------------------------


def failures_section(answer: dict[str, Any], window: str) -> str:
    """Question 1: ``reports.failures`` as a chart and a table."""
    now, previous = answer["now"], answer["previous"]
    rows = [
        [
            _stage_badge(p["stage"]),
            escape(p["provider"]),
            str(p["attempts"]),
            f"{_pct(p['first_attempt_failure_rate'])} "
            f'<span class="muted">(was {_pct(p["previous_first_attempt_failure_rate"])})</span>',
            f"{p['failed_calls']}/{p['calls']} · {_pct(p['call_failure_rate'])}",
        ]
        for p in now["providers"]
    ]
    chart = bars_svg(
        [
            (
                f"{p['stage']} {p['provider']}",
                p["first_attempt_failure_rate"],
                p["previous_first_attempt_failure_rate"],
            )
            for p in now["providers"]
        ],
        fmt=lambda v: f"{v:.1%}",
        css="bars failure-bars",
    )
    choices = "".join(
        f'<option value="{w}"{" selected" if w == window else ""}>{w}</option>'
        for w in WINDOW_CHOICES
    )
    return f"""<section id="failures"><h2>Failure rate by provider</h2>
<form class="filters" method="get"><label>window <select name="window">{choices}</select></label>
<button type="submit">Show</button></form>
<p><span class="big">{_pct(now["call_failure_rate"])}</span> of {now["calls"]} calls failed
in the last {escape(window)} <span class="muted">(previous window:
{_pct(previous["call_failure_rate"])} of {previous["calls"]})</span></p>
{chart}{
        _table(
            ["stage", "provider", "attempts", "first-attempt failures", "calls failed here"],
            rows,
            "failures",
        )
    }</section>"""


def cost_section(answer: dict[str, Any]) -> str:
    """Question 2: ``reports.cost`` as headline, chart and table."""
    weeks = answer["weeks"]
    this = weeks[0]
    last = weeks[1] if len(weeks) > 1 else None
    previous = {p["provider"]: p["cost_usd"] for p in last["by_provider"]} if last else {}
    chart = bars_svg(
        [(p["provider"], p["cost_usd"], previous.get(p["provider"])) for p in this["by_provider"]],
        fmt=lambda v: f"${v:.2f}",
        css="bars cost-bars",
    )
    rows = [
        [
            f"{_when(w['start_s'])[:10]} → {_when(w['end_s'])[:10]}",
            str(w["calls"]),
            str(w["converted_calls"]),
            _usd(w["cost_usd"]),
            _usd(w["cost_per_call_usd"]),
            _usd(w["cost_per_converted_call_usd"]),
        ]
        for w in weeks
    ]
    headers = ["week", "calls", "converted", "cost", "per call", "per converted call"]
    last_per_converted = last["cost_per_converted_call_usd"] if last else None
    return f"""<section id="cost"><h2>Cost per converted call</h2>
<p><span class="big">{_usd(this["cost_per_converted_call_usd"])}</span> this week
{_change(this.get("change_per_converted_call"))}
<span class="muted">last week: {_usd(last_per_converted)}</span></p>
{chart}{_table(headers, rows, "cost")}</section>"""


def last_failed_section(answer: list[dict[str, Any]]) -> str:
    """Question 3: ``reports.last_failed`` with links to each call's page."""
    rows = [
        [
            f'<a href="/dashboard/calls/{escape(c["call_id"])}">{escape(c["call_id"])}</a>',
            _when(c["started_at"]),
            _stage_badge(c["first_failing_stage"]),
            escape((c["first_failure"] or {}).get("provider") or ""),
            escape((c["first_failure"] or {}).get("error_class") or ""),
            escape(c["error"] or ""),
        ]
        for c in answer
    ]
    return f"""<section id="last-failed"><h2>Last failed calls</h2>{
        _table(
            ["call", "started", "first failing stage", "provider", "class", "error"],
            rows,
            "last-failed",
        )
    }</section>"""


def handoffs_section(answer: dict[str, Any]) -> str:
    """The handoff SLA (``ops/handoffs.py``): transfers by outcome, time from the agent's
    request to the outcome, and the share a human answered within the service level."""
    if not answer["transfers"]:
        return '<section id="handoffs"><h2>Handoffs</h2><p class="empty">no transfers</p></section>'
    rows = [
        [
            escape(o["outcome"]),
            str(o["transfers"]),
            *(f"{o[k]:.1f} s" if o[k] is not None else "-" for k in ("p50_s", "p90_s", "max_s")),
        ]
        for o in answer["outcomes"]
    ]
    return f"""<section id="handoffs"><h2>Handoffs</h2>
<p>{answer["transfers"]} transfers in the last {answer["window_s"] / 86400:g} days,
<span class="big">{_pct(answer["answered_rate"])}</span> answered by a human,
<span class="big">{_pct(answer["answered_within_sla_rate"])}</span> within
{answer["sla_s"]:g} s of the agent's request.</p>
{_table(["outcome", "transfers", "p50", "p90", "max"], rows, "handoffs")}</section>"""


def halve_section(answer: dict[str, Any]) -> str:
    """Question 4: ``reports.halve``, the halving set ticked."""
    chosen = {
        (c["stage"], c["provider"], c["error_class"], c["kind"]) for c in answer["halving_set"]
    }
    rows = []
    for c in answer["causes"]:
        key = (c["stage"], c["provider"], c["error_class"], c["kind"])
        mark = "✔" if key in chosen else ""
        rows.append(
            [
                mark,
                _stage_badge(c["stage"]),
                escape(c["provider"] or "—"),
                escape(c["error_class"] or "—"),
                f"{c['calls']} ({c['share']:.0%})",
                escape(c["fix"])
                + (f"<br><code>{escape(c['config_change'])}</code>" if c["config_change"] else ""),
            ]
        )
    return f"""<section id="halve"><h2>What would halve failures</h2>
<p>{answer["failed_calls"]} of {answer["calls"]} calls failed in the last
{answer["window_s"] / 86400:g} days ({_pct(answer["failure_rate"])}); fixing the ticked causes
leaves <span class="big">{_pct(answer["failure_rate_after"])}</span>.</p>
{_table(["", "stage", "provider", "class", "failed calls", "change"], rows, "causes")}</section>"""


def health_section(health: list[dict[str, Any]]) -> str:
    """``reports.provider_health`` as a table."""
    rows = [
        [
            _stage_badge(h["stage"]),
            escape(h["provider"]),
            str(h["attempts"]),
            _pct(h["error_rate"]),
            _ms(h["p50_ttfb_s"]),
            _ms(h["p95_ttfb_s"]),
        ]
        for h in health
    ]
    return f"""<section id="health"><h2>Provider health (last hour)</h2>{
        _table(["stage", "provider", "attempts", "errors", "p50 TTFB", "p95 TTFB"], rows, "health")
    }</section>"""


def credentials_section(statuses: list[CredentialStatus]) -> str:
    """Every registered credential with its state and expiry."""
    rows = [
        [
            escape(s.name),
            f"<code>${escape(s.env)}</code>",
            escape(s.kind),
            f'<span class="state-{escape(s.state)}">{escape(s.state)}</span>',
            _when(s.expires_at)[:10] if s.expires_at else "—",
            "—" if s.days_left is None else f"{s.days_left:.0f}",
            escape(s.detail),
        ]
        for s in statuses
    ]
    return f"""<section id="credentials"><h2>Credentials</h2>{
        _table(
            ["name", "variable", "kind", "state", "expires", "days left", "detail"],
            rows,
            "credentials",
            empty="no credentials registered (see voicerail ops credentials)",
        )
    }</section>"""


# -- calls -------------------------------------------------------------------------


def _select(name: str, choices: list[tuple[str, str]], chosen: str) -> str:
    options = "".join(
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(label)}</option>'
        for v, label in choices
    )
    return f'<label>{name} <select name="{name}" id="filter-{name}">{options}</select></label>'


def calls_body(calls: list[Any], providers: list[str], params: dict[str, str]) -> str:
    """The filter form and the call list."""
    form = (
        '<form class="filters" method="get" action="/dashboard/calls" id="call-filters">'
        + _select("outcome", [("", "any")] + [(o, o) for o in OUTCOMES], params["outcome"])
        + _select("provider", [("", "any")] + [(p, p) for p in providers], params["provider"])
        + _select("since", list(SINCE_CHOICES), params["since"])
        + f'<label>call id <input name="q" id="filter-q" value="{escape(params["q"])}"></label>'
        + '<button type="submit" id="apply-filters">Filter</button></form>'
    )
    rows = []
    for c in calls:
        seconds = f"{c.ended_at - c.started_at:.1f} s" if c.ended_at else "in progress"
        rows.append(
            [
                f'<a class="call-link" href="/dashboard/calls/{escape(c.call_id)}">'
                f"{escape(c.call_id)}</a>",
                _when(c.started_at),
                seconds,
                f'<span class="outcome" data-outcome="{escape(c.outcome or "")}">'
                f"{escape(c.outcome or '—')}</span>",
                str(c.data.get("turns", "")),
                escape(c.error or ""),
            ]
        )
    table = _table(["call", "started", "duration", "outcome", "turns", "error"], rows, "calls")
    return f"<section>{form}<p>{len(calls)} calls</p>{table}</section>"


def _transcript(events: list[Any], t0: float) -> str:
    lines = []
    for e in events:
        t = f'<span class="muted">{e.at_mono - t0:6.1f} s</span>'
        if e.kind == EventKind.TRANSCRIPT_FINAL and e.pii.get("text"):
            lines.append(f'<p class="caller">{t} caller: {escape(str(e.pii["text"]))}</p>')
        elif e.kind == EventKind.DIALOG_DECIDED and e.pii.get("agent_text"):
            lines.append(f'<p class="agent">{t} agent: {escape(str(e.pii["agent_text"]))}</p>')
        elif e.kind == EventKind.BARGE_IN:
            heard = escape(str(e.pii.get("heard_text", "")))
            lines.append(f'<p class="muted">{t} barge-in after “{heard}”</p>')
    return "".join(lines) or '<p class="empty">no transcript</p>'


def _handoff(events: list[Any]) -> str:
    """The handoff summary section (``handoff/summary.py``), empty without a handoff."""
    handoff = handoff_from_events(events)
    if handoff is None:
        return ""
    s = handoff["summary"]
    caller = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("caller", {}).items()))
    items = [
        ("Caller", caller or "not in the CRM"),
        ("Why", s.get("reason_text", "")),
        ("Collected", ", ".join(f"{k}: {v}" for k, v in s.get("collected", {}).items())),
        ("Done", "; ".join(s.get("actions", []))),
        ("Caller expects", s.get("caller_expects", "")),
        ("Next", s.get("next_action", "")),
    ]
    rows = "".join(f"<dt>{k}</dt><dd>{escape(str(v)) or '-'}</dd>" for k, v in items)
    return f'<section id="handoff"><h2>Handoff</h2><dl>{rows}</dl></section>'


def call_body(call: Any, events: list[Any]) -> str:
    """One call: summary, waterfall, transcript and events."""
    index = reports.first_failure(events)
    first = events[index] if index is not None else None
    t0 = events[0].at_mono if events else 0.0
    rows = []
    for e in events:
        css = ' class="first-failure"' if first is not None and e.seq == first.seq else ""
        data = json.dumps(scrub_value(e.data), default=str)
        rows.append(
            f"<tr{css}><td>{e.seq}</td><td>{e.at_mono - t0:.3f}</td><td>{escape(str(e.kind))}</td>"
            f"<td>{_stage_badge(str(e.stage) if e.stage else None)}</td>"
            f"<td>{escape(e.provider or '')}</td><td>{_ms(e.latency_s)}</td>"
            f"<td>{escape(e.outcome or '')}</td><td>{escape(e.error_class or '')}</td>"
            f"<td><code>{escape(data[:300])}</code></td></tr>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "seq",
            "t (s)",
            "event",
            "stage",
            "provider",
            "latency",
            "outcome",
            "class",
            "data",
        )
    )
    failing = (
        f"first failing stage: {_stage_badge(str(first.stage) if first.stage else None)} "
        f"{escape(first.provider or '')} {escape(first.error_class or '')}"
        if first is not None
        else ""
    )
    duration = f"{call.ended_at - call.started_at:.1f} s" if call.ended_at else "in progress"
    return f"""<section><p>started {_when(call.started_at)} · {duration} · outcome
<strong id="call-outcome">{escape(call.outcome or "in progress")}</strong> · agent
{escape(call.agent)} {f"· {escape(call.error)}" if call.error else ""}</p><p>{failing}</p></section>
<section id="waterfall"><h2>Timeline</h2>{
        waterfall_svg(events, first_failure=first.seq if first else None)
    }</section>
{_handoff(events)}<section id="transcript"><h2>Transcript</h2>{_transcript(events, t0)}</section>
<section id="events"><h2>Events</h2><table class="events"><thead><tr>{header}</tr></thead>
<tbody>{"".join(rows)}</tbody></table></section>"""


def credentials_alert(statuses: list[CredentialStatus]) -> str:
    """A banner listing credentials that need attention (empty when none)."""
    bad = [s for s in statuses if s.state in ("expiring", "expired", "refused", "missing")]
    if not bad:
        return ""
    items = "".join(
        f'<li class="state-{escape(s.state)}">{escape(s.name)} (${escape(s.env)}): '
        f"{escape(s.state)} {escape(s.detail)}</li>"
        for s in bad
    )
    return f'<section id="credential-alerts"><h2>Credential alerts</h2><ul>{items}</ul></section>'
