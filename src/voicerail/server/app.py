"""The ASGI application (Starlette), run by uvicorn.

Routes:

* ``POST /twilio/voice`` — Twilio's voice webhook; answers TwiML
  ``<Connect><Stream url="wss://…/twilio/media">`` with ``<Parameter>``s
  (https://www.twilio.com/docs/voice/twiml/stream). When an auth token is
  configured the ``X-Twilio-Signature`` header is validated with the twilio
  SDK's ``RequestValidator`` (https://www.twilio.com/docs/usage/webhooks/webhooks-security)
  and a bad or missing signature gets 403 (a missing one before the body is read).
* ``POST /twilio/connect-action`` — requested by Twilio when the stream ends
  without the call ending (``<Connect action>``): a call whose state says it
  can go on (its worker died, the drain deadline passed; ``state/resume.py``)
  gets a fresh ``<Connect><Stream>`` with a ``resume`` parameter, and the
  worker that takes the stream carries the call on; else the call is
  transferred with ``<Dial>`` when the agent requested a handoff and a handoff
  number is configured, else hung up. Load never refuses that fresh stream
  (``session/load.py`` rule 6); only a drain does, so a draining worker offers
  it only when other workers share the port (it has stopped listening, and the
  stream reaches one of them); alone it hangs up, as its drain would refuse.
* ``POST /twilio/pay-action`` — Twilio's ``<Pay>`` result, for agents whose card
  capture is ``twilio_pay``: the connect action sends such a call to ``<Pay>``
  and this route brings it back to a fresh stream (``compliance/pay_http.py``).
* ``WS /twilio/media`` — one call per connection (:class:`CallSession`), from its
  ``start`` on; the stream's deadlines and rate are ``ServerSettings.limits.stream``
  and at most ``max_pending_streams`` sockets may wait for ``start``. One live
  stream per CallSid in a process: a newer one takes over (``session/resume.py``).
* ``/telnyx/*``, ``/plivo/*``, ``/vonage/*`` — the other providers' webhooks and
  media sockets (``server/provider_routes.py``), over the same call driver.
* ``GET /call``, ``WS /call/media`` — the browser call page, only with
  ``browser_calls`` (``server/browser_calls.py``).
* ``GET /healthz`` — liveness, calls in progress (streams past ``start``) and
  the answering worker's process id.
* ``GET /readyz`` — readiness for a load balancer: 200 while a new call would
  be admitted, 503 when full, overloaded or draining; the load in the body.
* Admission (``session/load.py``, ``server/admission.py``): beyond capacity the
  voice webhook answers the agent's overflow TwiML and a media stream is
  closed with 1013; both are ``CallRefused`` events.
* ``GET /api/calls`` and ``GET /api/calls/{call_id}`` — calls and timelines, JSON;
  each row of the list says which worker process serves the call (``worker_pid``).
* Operations (``server/operations.py``): ``/metrics``, ``/dashboard``,
  ``/api/ops/*``, ``/login``; API key or login when configured.

Every request body is capped and must arrive within a deadline
(``server/limits.py``); request heads have their own deadline in the uvicorn
protocol ``voicerail serve`` runs (``server/http_limits.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from voicerail.compliance.pay_http import pay_routes, pay_twiml_for
from voicerail.errors import StoreError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.handoff.summary import handoff_from_events
from voicerail.server.admission import OverflowPolicy
from voicerail.server.browser_calls import browser_call_routes
from voicerail.server.handoff import HandoffDesk, HandoffSettings, handoff_routes
from voicerail.server.limits import BodyLimitMiddleware, ServerLimits
from voicerail.server.login_throttle import LoginThrottle
from voicerail.server.operations import OperationsSettings, mount_operations
from voicerail.server.params import BadParameter, parse_calls_query
from voicerail.server.provider_routes import provider_routes
from voicerail.server.proxy import ForwardedHeadersMiddleware, TrustedProxies
from voicerail.server.sip_server import SipEndpoint, SipSettings
from voicerail.session.driver import CallSession
from voicerail.session.resume import StreamRegistry
from voicerail.session.runtime import Runtime
from voicerail.state.resume import resumable, stream_parameters
from voicerail.wire.transport import MediaTransport
from voicerail.wire.twilio_transport import TwilioTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """Server-level settings.

    Attributes:
        twilio_auth_token: enables ``X-Twilio-Signature`` validation when set.
        public_url: the externally visible base URL (``https://voice.example.com``);
            used for signature validation and the stream URL behind proxies.
        forwarded_allow_ips: the reverse proxies whose ``X-Forwarded-Proto``,
            ``-Host`` and ``-For`` are believed (``server/proxy.py``); none by default.
        handoff_number: E.164 number a handoff is transferred to with ``<Dial>``.
        operations: metrics, traces, dashboard, access and credential checks.
        overflow: what callers beyond capacity get (the agent file's ``overflow``).
        limits: deadlines, rates and sizes that bound abusive or idle peers.
        handoff: warm or cold transfer through Twilio's REST API (``server/handoff.py``);
            when set it is used instead of ``handoff_number``.
        other_workers: other workers share this server's port (``--workers N``), so
            a draining worker may still answer a resume: the new stream reaches one
            of the others. A server alone hangs up instead (its drain would refuse
            the stream, and Twilio would ask again).
        telnyx_public_key: base64 Ed25519 key; Telnyx webhooks are verified when set.
        browser_calls: serve the browser call page at ``/call`` (``server/browser_calls.py``);
            behind the dashboard's login when access is configured.
        sip: answer SIP calls over UDP too (``server/sip_server.py``) when set.
    """

    twilio_auth_token: str | None = None
    public_url: str | None = None
    forwarded_allow_ips: TrustedProxies = field(default_factory=TrustedProxies)
    handoff_number: str | None = None
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    overflow: OverflowPolicy = field(default_factory=OverflowPolicy)
    limits: ServerLimits = field(default_factory=ServerLimits)
    handoff: HandoffSettings | None = None
    other_workers: bool = False
    telnyx_public_key: str | None = None
    browser_calls: bool = False
    sip: SipSettings | None = None


def create_app(runtime: Runtime, settings: ServerSettings | None = None) -> Starlette:
    """Build the ASGI app around ``runtime``."""
    settings = settings or ServerSettings()
    validator = RequestValidator(settings.twilio_auth_token) if settings.twilio_auth_token else None
    active: dict[int, CallSession] = {}  # by stream: two streams may share a call id
    streams = StreamRegistry()
    refused = [0]  # media streams refused at the handshake, for the log
    desk = HandoffDesk(runtime, settings.handoff) if settings.handoff else None

    def external_url(request: Request) -> str:
        # The full URL Twilio requested, query string included (it is signed too).
        if settings.public_url:
            query = f"?{request.url.query}" if request.url.query else ""
            return settings.public_url.rstrip("/") + request.url.path + query
        return str(request.url)  # scheme and host from a trusted proxy (server/proxy.py)

    async def signed_form(request: Request) -> dict[str, str] | None:
        signature = request.headers.get("X-Twilio-Signature", "")
        if validator is not None and not signature:
            return None  # refused before the body is read
        form = {k: str(v) for k, v in (await request.form()).items()}
        if validator is None:
            return form
        if not validator.validate(external_url(request), form, signature):
            return None
        return form

    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        decision = runtime.load.admit(reservation=form.get("CallSid") or None)
        if not decision.admit:
            refuse_at_webhook(form.get("CallSid"), decision.reason)
            return Response(settings.overflow.twiml(), media_type="application/xml")
        params = {name.lower(): form[name] for name in ("From", "To", "CallSid") if form.get(name)}
        return stream_twiml(request, params)

    def stream_twiml(request: Request, params: dict[str, str]) -> Response:
        """``<Connect action><Stream>`` to this server's media URL, with ``params``."""
        if settings.public_url:
            host = settings.public_url.split("://", 1)[-1].rstrip("/")
        else:
            host = request.headers.get("host", "localhost")
        response = VoiceResponse()
        connect = Connect(action="/twilio/connect-action")
        stream = connect.stream(url=f"wss://{host}/twilio/media")
        for name, value in params.items():
            stream.parameter(name=name, value=value)
        response.append(connect)
        return Response(str(response), media_type="application/xml")

    def refuse_at_webhook(call_sid: str | None, reason: str | None) -> None:
        clock = runtime.clock
        runtime.events.append(
            Event(
                call_id=f"refused_{call_sid or clock.wall()}",
                kind=EventKind.CALL_REFUSED,
                at_wall=clock.wall(),
                at_mono=clock.monotonic(),
                stage=Stage.TELEPHONY,
                outcome="refused",
                data={"where": "webhook", "reason": reason, "action": settings.overflow.action},
                pii={"call_sid": call_sid},
            )
        )
        log.warning("call %s refused at the webhook (%s)", call_sid, reason)

    async def connect_action(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        response = VoiceResponse()
        call_sid = form.get("CallSid")
        pay = await pay_twiml_for(runtime, call_sid)  # compliance/pay_http.py
        if pay is not None:
            return Response(pay, media_type="application/xml")
        resumes = await resumable_call(call_sid)
        if resumes is not None:
            return stream_twiml(request, stream_parameters(form, resumes))
        found = runtime.events.calls(limit=1, call_sid=call_sid) if call_sid else []
        call = found[0] if found else None
        wants_human = call is not None and bool(call.data.get("handoff"))
        if wants_human and desk is not None and call is not None and call_sid:
            base = settings.public_url or f"https://{request.headers.get('host', 'localhost')}"
            twiml = await desk.begin(call_sid, call.call_id, base.rstrip("/"))
            return Response(twiml, media_type="application/xml")
        if wants_human and settings.handoff_number:
            response.dial(settings.handoff_number)
        else:
            response.hangup()
        return Response(str(response), media_type="application/xml")

    async def resumable_call(call_sid: str | None) -> int | None:
        """``state/resume.py`` rules 1 and 2: the times the call was resumed when it
        can go on, else None (no state store, no state, or its end was reached)."""
        if runtime.state is None or not call_sid:
            return None
        if runtime.load.draining and not settings.other_workers:
            return None
        try:
            state = await asyncio.wait_for(runtime.state.load_by_call_sid(call_sid), 2.0)
        except (StoreError, TimeoutError) as exc:
            log.warning("connect action: call state unavailable: %s", exc)
            return None
        if state is None or not resumable(state):
            return None
        log.warning("call %s: stream ended mid-call; resuming on a new stream", state.call_id)
        return state.resumes

    async def media(websocket: WebSocket) -> None:
        await run_stream(websocket, TwilioTransport())

    async def run_stream(websocket: WebSocket, transport: MediaTransport) -> None:
        """One call over ``websocket`` spoken in ``transport``'s protocol."""
        pending = sum(1 for s in active.values() if not s.started)
        if pending >= settings.limits.max_pending_streams:
            # Refused before the handshake completes (uvicorn answers 403). Logged
            # once per 100 refusals, so a flood of sockets is not a flood of lines.
            refused[0] += 1
            if refused[0] % 100 == 1:
                log.warning(
                    "media stream refused: %d sockets already wait for 'start' (%d refused so far)",
                    pending,
                    refused[0],
                )
            await websocket.close(code=1013)
            return
        await websocket.accept()
        session = CallSession(
            runtime,
            _sender(websocket),
            _closer(websocket),
            settings.limits.stream,
            streams,
            transport=transport,
        )
        active[id(session)] = session
        try:
            await session.run(_incoming(websocket))
        finally:
            active.pop(id(session), None)

    async def healthz(request: Request) -> Response:
        calls = sum(1 for s in active.values() if s.started)
        body = {"status": "ok", "calls_in_progress": calls, "worker_pid": runtime.worker.pid}
        return JSONResponse(body)

    async def readyz(request: Request) -> Response:
        ready, load = runtime.load.ready()
        body = {"ready": ready, **load.to_dict()}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def list_calls(request: Request) -> Response:
        try:
            query = parse_calls_query(request.query_params)
        except BadParameter as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            calls = await asyncio.to_thread(
                runtime.events.calls,
                limit=query.limit,
                outcome=query.outcome,
                call_sid=query.call_sid,
            )
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        rows = [c.to_dict() for c in calls]
        here = {s.call_id for s in active.values()}
        for row in rows:
            # Another worker's call is in progress while its row has no end.
            row["in_progress"] = row["call_id"] in here or row["ended_at"] is None
            row["worker_pid"] = row["data"].get("worker_pid")  # who serves it (issue 12)
        return JSONResponse({"calls": rows})

    async def get_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        try:
            call = await asyncio.to_thread(runtime.events.call, call_id)
            events = await asyncio.to_thread(runtime.events.events, call_id)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        if call is None:
            return JSONResponse({"error": f"no call {call_id!r}"}, status_code=404)
        body = call.to_dict()
        body["in_progress"] = any(s.call_id == call_id for s in active.values())
        body["events"] = [e.to_dict() for e in events]
        body["handoff"] = handoff_from_events(events)
        return JSONResponse(body)

    routes = [
        Route("/twilio/voice", voice, methods=["POST"]),
        Route("/twilio/connect-action", connect_action, methods=["POST"]),
        WebSocketRoute("/twilio/media", media),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/calls", list_calls),
        Route("/api/calls/{call_id}", get_call),
    ]
    routes += provider_routes(
        runtime,
        run_stream,
        refuse_at_webhook,
        public_url=settings.public_url,
        telnyx_public_key=settings.telnyx_public_key,
    )
    if desk is not None:
        routes += handoff_routes(desk, signed_form)
    routes += pay_routes(
        runtime, signed_form, lambda r, form, n: stream_twiml(r, stream_parameters(form, n))
    )
    operations = settings.operations
    if settings.browser_calls:
        routes += browser_call_routes(run_stream, public_url=settings.public_url)
        access = operations.access
        if "/call" not in access.protected_prefixes:  # browser_calls.py rule 1
            prefixes = (*access.protected_prefixes, "/call")
            access = replace(access, protected_prefixes=prefixes)
            operations = replace(operations, access=access)
    sip_endpoint = None
    if settings.sip is not None:
        sip_endpoint = SipEndpoint(runtime, settings.sip, refuse_at_webhook, active)
    app = Starlette(routes=routes, lifespan=_sampling_load(runtime, sip_endpoint))
    app.state.sip = sip_endpoint
    app.state.handoff_desk = desk
    app.state.calls = active  # read by the SIGTERM drain (server/drain.py)
    limits = settings.limits
    throttle = LoginThrottle(
        per_client=limits.login_failures_per_client,
        per_account=limits.login_failures_per_account,
        window_s=limits.login_window_s,
        lockout_s=limits.login_lockout_s,
    )
    mount_operations(app, runtime, operations, login_throttle=throttle)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=limits.max_body_bytes,
        body_timeout_s=limits.body_timeout_s,
    )
    if settings.forwarded_allow_ips:  # outermost: every layer sees the client's URL
        app.add_middleware(ForwardedHeadersMiddleware, trusted=settings.forwarded_allow_ips)
    return app


def _sampling_load(runtime: Runtime, sip: SipEndpoint | None = None) -> Callable[[Starlette], Any]:
    """A lifespan that samples event-loop lag and CPU while the app runs, and
    runs the SIP endpoint when there is one."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sip is not None:
            await sip.start()
        task = asyncio.create_task(runtime.load.run(), name="load-sampler")
        try:
            yield
        finally:
            if sip is not None:
                await sip.aclose()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


async def _incoming(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """Frames (text or binary) until the peer disconnects; the transport judges them."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        yield text if text is not None else (message.get("bytes") or b"")


def _sender(websocket: WebSocket) -> Callable[[str | bytes], Awaitable[None]]:
    async def send(frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await websocket.send_bytes(frame)
        else:
            await websocket.send_text(frame)

    return send


def _closer(websocket: WebSocket) -> Callable[[int, str], Awaitable[None]]:
    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason[:120])

    return close
