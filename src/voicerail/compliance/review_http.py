"""The dashboard's review page: the QA sample and a form per call to label it.

Routes (behind the dashboard login, ``server/auth.py``, as every ``/dashboard`` path):

* ``GET /dashboard/review?days=N`` — the calls of the last ``N`` days (default 7,
  at most 90) that the sampling rules choose (``evaluation.py`` rule 2), each
  with why, its evaluation, its latest label and a form to set one.
* ``POST /dashboard/review/{call_id}/label`` — form fields ``label`` (one of
  :data:`~voicerail.compliance.review.LABELS`), ``reviewer`` (optional) and
  ``csrf``; appends a ``ReviewLabeled`` event (``review.py`` rule 3) and answers
  303 back to the page.

Rules:

1. Every answered read of the page writes an audit entry (``review.list``, the
   number of calls shown), every label one (``call.labeled``), with the actor as
   ``audit_http.py`` names it. A failed audit write is logged, never raised
   (``audit_http.py`` rule 2).
2. Cross-site request forgery: the form carries a token derived from the
   session cookie (which a cross-site page cannot read; the cookie is also
   ``SameSite=Strict``); a POST whose token does not match, or whose ``Origin``
   names another host, is refused with 403 and changes nothing.
3. Reading and writing the store run in a worker thread; an unknown call is
   404, an unknown label 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import escape
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.audit_http import actor_of
from voicerail.compliance.evaluation import CallEvaluation, sample
from voicerail.compliance.policy import SamplingPolicy
from voicerail.compliance.review import LABELS, label_event, window_calls
from voicerail.errors import StoreError
from voicerail.events.model import Event, EventKind
from voicerail.events.store import EventStore, SQLReader
from voicerail.server import pages
from voicerail.server.auth import COOKIE

log = logging.getLogger(__name__)
DAY_S = 86400.0


@dataclass
class ReviewPage:
    """What the review page reads and where it writes.

    Attributes:
        store: returns the event store (it must answer queries, ``SQLReader``).
        now: wall clock, Unix seconds.
        audit_path: the audit log file.
        sampling: the deployment's sampling rules (``compliance.sampling``).
        success: the agent's success labels (intent → outcome).
    """

    store: Callable[[], EventStore]
    now: Callable[[], float]
    audit_path: Path
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    success: Mapping[str, str] = field(default_factory=dict)

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """Rule 1: one entry (blocking; call it in a worker thread)."""
        try:
            audit = AuditLog(self.audit_path)
            try:
                audit.append(actor, action, target, detail, at_wall=self.now())
            finally:
                audit.close()
        except StoreError as exc:
            log.warning("audit entry not written: %s", exc)


def csrf_token(cookie: str) -> str:
    """Rule 2: the form token for a session cookie value ("" without a session)."""
    return hashlib.sha256(b"voicerail-review-csrf\0" + cookie.encode()).hexdigest()[:32]


def _session(request: Request) -> str:
    cookies = SimpleCookie()
    try:
        cookies.load(request.headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is simply no session
        return ""
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else ""


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _latest_label(events: list[Event]) -> tuple[str, str] | None:
    for event in reversed(events):
        if event.kind == EventKind.REVIEW_LABELED:
            return str(event.data.get("label")), str(event.data.get("reviewer") or "")
    return None


def review_routes(page: ReviewPage) -> list[Route]:
    """The two routes of the module docstring."""

    def sampled(days: float) -> list[tuple[CallEvaluation, str, tuple[str, str] | None]]:
        store = page.store()
        if not getattr(store, "dialect", "") or not hasattr(store, "fetch"):
            raise StoreError(f"{type(store).__name__} cannot answer operations queries")
        now = page.now()
        calls = window_calls(cast(SQLReader, store), now - days * DAY_S, now, page.success)
        events = {ev.call_id: evs for _, ev, evs in calls}
        chosen = sample([ev for _, ev, _ in calls], page.sampling)
        return [(ev, why, _latest_label(events[ev.call_id])) for ev, why in chosen]

    async def review(request: Request) -> Response:
        try:
            days = max(1.0, min(90.0, float(request.query_params.get("days", "7"))))
        except ValueError:
            days = 7.0
        try:
            rows = await asyncio.to_thread(sampled, days)
        except StoreError as exc:
            return pages.error_page(str(exc), 503)
        actor = actor_of(request.scope)
        detail = {"calls": len(rows), "days": days}
        await asyncio.to_thread(page.audit, actor, "review.list", "/dashboard/review", detail)
        token = csrf_token(_session(request))
        body = review_body(rows, days, token, saved=request.query_params.get("saved", ""))
        return pages.page("Review", body, "review")

    async def label(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        form = await request.form()
        token = str(form.get("csrf") or "")
        expected = csrf_token(_session(request))
        if not _same_origin(request) or not hmac.compare_digest(token, expected):
            return pages.error_page("the form expired or came from another site; reload it", 403)
        chosen = str(form.get("label") or "")
        reviewer = str(form.get("reviewer") or "").strip()[:64] or "dashboard"
        try:
            event = label_event(call_id, chosen, reviewer=reviewer, at_wall=page.now())
        except ValueError as exc:
            return pages.error_page(str(exc), 400)
        store = page.store()

        def write() -> bool:
            if store.call(call_id) is None:
                return False
            store.append(event)
            return True

        try:
            if not await asyncio.to_thread(write):
                return pages.error_page(f"no call {call_id!r}", 404)
        except StoreError as exc:
            return pages.error_page(str(exc), 503)
        actor = actor_of(request.scope)
        detail = {"label": chosen, "reviewer": reviewer}
        await asyncio.to_thread(page.audit, actor, "call.labeled", call_id, detail)
        return RedirectResponse(f"/dashboard/review?saved={quote(call_id)}", status_code=303)

    return [
        Route("/dashboard/review", review),
        Route("/dashboard/review/{call_id}/label", label, methods=["POST"]),
    ]


def add_review_page(app: Any, runtime: Any, options: Any) -> ReviewPage:
    """Add the routes to ``voicerail serve``'s app: the runtime's event store, the
    deployment file's sampling rules (``compliance.sampling``, else the defaults), the
    agent file's success labels, and ``DATA_DIR/audit.sqlite3``; returns the page's
    settings.

    Raises:
        ConfigError: the agent or deployment file's compliance section is invalid.
    """
    import time

    from voicerail.compliance.policy import deployment_compliance, policy_of_agent_file

    sampling = deployment_compliance(options.providers_path).sampling or SamplingPolicy()
    success = policy_of_agent_file(options.agent_path).evaluation.success
    page = ReviewPage(lambda: runtime.events, time.time, options.data_dir / "audit.sqlite3",
                      sampling, dict(success))  # fmt: skip
    app.router.routes.extend(review_routes(page))
    return page


def _label_form(call_id: str, current: str | None, token: str) -> str:
    options = "".join(
        f'<option value="{name}"{" selected" if name == current else ""}>{name}</option>'
        for name in LABELS
    )
    return (
        f'<form method="post" action="/dashboard/review/{quote(call_id)}/label" class="label">'
        f'<input type="hidden" name="csrf" value="{token}">'
        f'<select name="label" aria-label="label">{options}</select>'
        '<input name="reviewer" placeholder="reviewer" size="10">'
        '<button type="submit">Save</button></form>'
    )


def review_body(
    rows: list[tuple[CallEvaluation, str, tuple[str, str] | None]],
    days: float,
    token: str,
    *,
    saved: str = "",
) -> str:
    """The page's HTML: one row per sampled call (``rows`` from the sampling)."""
    notice = f'<p class="saved">Saved the label of {escape(saved)}.</p>' if saved else ""
    if not rows:
        table = "<p>No call to review in this window.</p>"
    else:
        lines = [
            "<table id='review'><tr><th>call</th><th>why</th><th>outcome</th><th>intents</th>"
            "<th>completed</th><th>max latency</th><th>guard hits</th><th>label</th>"
            "<th>set label</th></tr>"
        ]
        for ev, why, current in rows:
            shown = f"{escape(current[0])} ({escape(current[1])})" if current else "–"
            latency = f"{max(ev.latency_ms):.0f} ms" if ev.latency_ms else "–"
            completed = "–" if ev.completed is None else ("yes" if ev.completed else "no")
            lines.append(
                f'<tr id="review-{escape(ev.call_id)}"><td><a href="/dashboard/calls/'
                f'{quote(ev.call_id)}">{escape(ev.call_id)}</a></td><td>{escape(why)}</td>'
                f"<td>{escape(ev.outcome or '–')}</td><td>{escape(' '.join(ev.intents))}</td>"
                f"<td>{completed}</td><td>{latency}</td><td>{ev.guard_hits}</td>"
                f'<td class="current">{shown}</td>'
                f"<td>{_label_form(ev.call_id, current[0] if current else None, token)}</td></tr>"
            )
        lines.append("</table>")
        table = "".join(lines)
    return (
        f"<section>{notice}<p>{len(rows)} calls sampled for review in the last "
        f"{days:g} days (failed calls, handoffs, guard hits and a share of the rest).</p>"
        f'<form method="get"><label>days <input name="days" value="{days:g}" size="3">'
        f"</label> <button>Show</button></form>{table}</section>"
    )
