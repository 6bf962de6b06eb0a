"""The operations dashboard and its JSON API, server-rendered (no build step).

Pages:

* ``GET /dashboard`` — the four answers (failure rate by provider now against
  the previous window, cost per converted call this week against last, the last
  failed calls with their first failing stage, what would halve failures),
  provider health and credential alerts.
* ``GET /dashboard/calls`` — the call list, filtered by outcome, provider, start
  time and call id (a plain GET form, so filters are links too).
* ``GET /dashboard/calls/{call_id}`` — one call: the waterfall, the transcript
  and every event.

JSON (the same answers as ``voicerail ops … --json``): ``GET /api/ops/failures``
(``window``), ``/api/ops/cost`` (``weeks``), ``/api/ops/last-failed`` (``n``),
``/api/ops/halve`` (``window``), ``/api/ops/providers`` (``window``),
``/api/ops/credentials``.

The pages show transcripts (personal data): access is enforced by
``server/auth.py`` when configured. Reports run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicerail.errors import StoreError
from voicerail.events import queries
from voicerail.events.store import EventStore, SQLReader
from voicerail.ops import reports
from voicerail.ops.credentials import CredentialStatus
from voicerail.ops.handoffs import handoff_sla
from voicerail.server import pages


@dataclass
class DashboardState:
    """What the pages read, looked up at request time.

    Attributes:
        store: returns the event store (the runtime's, possibly wrapped later).
        now: wall clock, Unix seconds.
        credentials: the latest credential statuses.
    """

    store: Callable[[], EventStore]
    now: Callable[[], float]
    credentials: Callable[[], list[CredentialStatus]]

    def reader(self) -> SQLReader:
        """The store as a query reader.

        Raises:
            StoreError: the store cannot answer queries.
        """
        store = self.store()
        if not getattr(store, "dialect", "") or not hasattr(store, "fetch"):
            raise StoreError(f"{type(store).__name__} cannot answer operations queries")
        return cast(SQLReader, store)


# -- requests ----------------------------------------------------------------------


def _call_filter(request: Request, now_s: float) -> tuple[queries.CallFilter, dict[str, str]]:
    params = {k: request.query_params.get(k, "") for k in ("outcome", "provider", "since", "q")}
    if "since" not in request.query_params:
        params["since"] = "7d"
    since_s = None
    if params["since"]:
        try:
            since_s = now_s - reports.parse_duration(params["since"])
        except ValueError:
            params["since"] = ""
    outcome = params["outcome"] if params["outcome"] in pages.OUTCOMES else None
    where = queries.CallFilter(
        outcome=outcome,
        provider=params["provider"] or None,
        since_s=since_s,
        call_id=params["q"].strip() or None,
        limit=200,
    )
    return where, params


# -- routes --------------------------------------------------------------------------


def _duration_param(request: Request, name: str, default: str) -> tuple[str, float]:
    text = request.query_params.get(name, default)
    try:
        return text, reports.parse_duration(text)
    except ValueError:
        return default, reports.parse_duration(default)


def _int_param(request: Request, name: str, default: int, top: int) -> int:
    try:
        return max(1, min(top, int(request.query_params.get(name, default))))
    except ValueError:
        return default


def dashboard_routes(state: DashboardState) -> list[Route]:
    """The dashboard pages and ``/api/ops/*``."""

    async def run(fn: Callable[[SQLReader], Any]) -> Any:
        return await asyncio.to_thread(lambda: fn(state.reader()))

    async def overview(request: Request) -> Response:
        window, window_s = _duration_param(request, "window", "15m")
        now_s = state.now()
        try:
            answers = await run(
                lambda db: (
                    reports.failures(db, window_s=window_s, now_s=now_s),
                    reports.cost(db, weeks=2, now_s=now_s),
                    reports.last_failed(db, n=10),
                    reports.halve(db, window_s=7 * 86400.0, now_s=now_s),
                    reports.provider_health(db, window_s=3600.0, now_s=now_s),
                    handoff_sla(db, window_s=7 * 86400.0, now_s=now_s),
                )
            )
        except StoreError as exc:
            return pages.error_page(str(exc), 503)
        failures, cost, last, halve, health, handoffs = answers
        body = (
            pages.credentials_alert(state.credentials())
            + '<div class="grid">'
            + pages.failures_section(failures, window)
            + pages.cost_section(cost)
            + "</div>"
            + pages.last_failed_section(last)
            + pages.halve_section(halve)
            + '<div class="grid">'
            + pages.health_section(health)
            + pages.credentials_section(state.credentials())
            + "</div>"
            + pages.handoffs_section(handoffs)
        )
        return pages.page("The four questions", body, "overview")

    async def call_list(request: Request) -> Response:
        now_s = state.now()
        where, params = _call_filter(request, now_s)
        try:
            calls, providers = await run(
                lambda db: (
                    queries.find_calls(db, where),
                    queries.providers_seen(db, now_s - 30 * 86400.0),
                )
            )
        except StoreError as exc:
            return pages.error_page(str(exc), 503)
        return pages.page("Calls", pages.calls_body(calls, providers, params), "calls")

    async def call_page(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        store = state.store()
        try:
            call = await asyncio.to_thread(store.call, call_id)
            events = await asyncio.to_thread(store.events, call_id)
        except StoreError as exc:
            return pages.error_page(str(exc), 503)
        if call is None:
            return pages.error_page(f"no call {call_id!r}", 404)
        return pages.page(f"Call {call_id}", pages.call_body(call, events), "calls")

    async def api(request: Request) -> Response:
        question = request.path_params["question"]
        now_s = state.now()
        if question == "credentials":
            return JSONResponse({"credentials": [s.to_dict() for s in state.credentials()]})
        _, window_s = _duration_param(
            request, "window", "15m" if question in ("failures", "providers") else "7d"
        )
        answers: dict[str, Callable[[SQLReader], Any]] = {
            "failures": lambda db: reports.failures(db, window_s=window_s, now_s=now_s),
            "cost": lambda db: reports.cost(
                db, weeks=_int_param(request, "weeks", 2, 52), now_s=now_s
            ),
            "last-failed": lambda db: {
                "calls": reports.last_failed(db, n=_int_param(request, "n", 10, 100))
            },
            "halve": lambda db: reports.halve(db, window_s=window_s, now_s=now_s),
            "providers": lambda db: {
                "providers": reports.provider_health(db, window_s=window_s, now_s=now_s)
            },
            "handoffs": lambda db: handoff_sla(db, window_s=window_s, now_s=now_s),
        }
        if question not in answers:
            return JSONResponse({"error": f"no question {question!r}"}, status_code=404)
        try:
            return JSONResponse(await run(answers[question]))
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    return [
        Route("/dashboard", overview),
        Route("/dashboard/calls", call_list),
        Route("/dashboard/calls/{call_id}", call_page),
        Route("/api/ops/{question}", api),
    ]
