"""The ASGI application (Starlette), run by uvicorn.

Routes:

* ``POST /twilio/voice`` — Twilio's voice webhook; answers TwiML
  ``<Connect><Stream url="wss://…/twilio/media">`` with ``<Parameter>``s
  (https://www.twilio.com/docs/voice/twiml/stream). When an auth token is
  configured the ``X-Twilio-Signature`` header is validated with the twilio
  SDK's ``RequestValidator`` (https://www.twilio.com/docs/usage/webhooks/webhooks-security)
  and a bad or missing signature gets 403.
* ``POST /twilio/connect-action`` — requested by Twilio when the stream ends
  (``<Connect action>``); transfers the call with ``<Dial>`` when the agent
  requested a handoff and a handoff number is configured, else hangs up.
* ``WS /twilio/media`` — one call per connection (:class:`CallSession`).
* ``GET /healthz`` — liveness and calls in progress.
* ``GET /api/calls`` and ``GET /api/calls/{call_id}`` — calls and timelines, JSON.
* Operations (``server/operations.py``): ``/metrics``, ``/dashboard``,
  ``/api/ops/*``, ``/login``; API key or login when configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from voicerail.errors import StoreError
from voicerail.handoff.summary import handoff_from_events
from voicerail.server.handoff import HandoffDesk, HandoffSettings, handoff_routes
from voicerail.server.operations import OperationsSettings, mount_operations
from voicerail.session.driver import CallSession
from voicerail.session.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """Server-level settings.

    Attributes:
        twilio_auth_token: enables ``X-Twilio-Signature`` validation when set.
        public_url: the externally visible base URL (``https://voice.example.com``);
            used for signature validation and the stream URL behind proxies.
        handoff_number: E.164 number a handoff is transferred to with ``<Dial>``.
        operations: metrics, traces, dashboard, access and credential checks.
        handoff: warm or cold transfer through Twilio's REST API (``server/handoff.py``);
            when set it is used instead of ``handoff_number``.
    """

    twilio_auth_token: str | None = None
    public_url: str | None = None
    handoff_number: str | None = None
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    handoff: HandoffSettings | None = None


def create_app(runtime: Runtime, settings: ServerSettings | None = None) -> Starlette:
    """Build the ASGI app around ``runtime``."""
    settings = settings or ServerSettings()
    validator = RequestValidator(settings.twilio_auth_token) if settings.twilio_auth_token else None
    active: dict[str, CallSession] = {}
    desk = HandoffDesk(runtime, settings.handoff) if settings.handoff else None

    def external_url(request: Request) -> str:
        if settings.public_url:
            return settings.public_url.rstrip("/") + request.url.path
        return str(request.url)

    async def signed_form(request: Request) -> dict[str, str] | None:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if validator is None:
            return form
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(external_url(request), form, signature):
            return None
        return form

    async def voice(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        if settings.public_url:
            host = settings.public_url.split("://", 1)[-1].rstrip("/")
        else:
            host = request.headers.get("host", "localhost")
        response = VoiceResponse()
        connect = Connect(action="/twilio/connect-action")
        stream = connect.stream(url=f"wss://{host}/twilio/media")
        for name in ("From", "To", "CallSid"):
            if form.get(name):
                stream.parameter(name=name.lower(), value=form[name])
        response.append(connect)
        return Response(str(response), media_type="application/xml")

    async def connect_action(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("invalid X-Twilio-Signature", status_code=403)
        response = VoiceResponse()
        call_sid = form.get("CallSid")
        call = next((c for c in runtime.events.calls(limit=200) if c.call_sid == call_sid), None)
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

    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        session = CallSession(runtime, websocket.send_text, _closer(websocket))
        active[session.call_id] = session
        try:
            await session.run(_incoming(websocket))
        finally:
            active.pop(session.call_id, None)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "calls_in_progress": len(active)})

    async def list_calls(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            return JSONResponse({"error": "limit must be an integer"}, status_code=400)
        outcome = request.query_params.get("outcome")
        call_sid = request.query_params.get("call_sid")
        try:
            calls = await asyncio.to_thread(runtime.events.calls, limit=limit, outcome=outcome)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        rows = [c.to_dict() for c in calls if call_sid is None or c.call_sid == call_sid]
        for row in rows:
            row["in_progress"] = row["call_id"] in active
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
        body["in_progress"] = call_id in active
        body["events"] = [e.to_dict() for e in events]
        body["handoff"] = handoff_from_events(events)
        return JSONResponse(body)

    routes = [
        Route("/twilio/voice", voice, methods=["POST"]),
        Route("/twilio/connect-action", connect_action, methods=["POST"]),
        WebSocketRoute("/twilio/media", media),
        Route("/healthz", healthz),
        Route("/api/calls", list_calls),
        Route("/api/calls/{call_id}", get_call),
    ]
    if desk is not None:
        routes += handoff_routes(desk, signed_form)
    app = Starlette(routes=routes)
    app.state.handoff_desk = desk
    mount_operations(app, runtime, settings.operations)
    return app


async def _incoming(websocket: WebSocket) -> AsyncIterator[str]:
    """Text messages until the peer disconnects; binary frames are passed on as text
    so the protocol layer rejects them with a precise error."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            text = data.decode("utf-8", errors="replace")
        yield text


def _closer(websocket: WebSocket) -> Callable[[int, str], Awaitable[None]]:
    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason[:120])

    return close
