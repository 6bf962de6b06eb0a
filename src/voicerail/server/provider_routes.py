"""Webhooks and media sockets of the providers other than Twilio.

Routes (each webhook answers the provider's call-control language with a
bidirectional media stream back to this server; each socket is one call, run by
:class:`~voicerail.session.driver.CallSession` over that provider's transport):

* ``POST /telnyx/voice`` — a TeXML application's voice URL: answers
  ``<Connect><Stream url="wss://…/telnyx/media" bidirectionalMode="rtp"
  bidirectionalCodec="PCMU">`` with ``<Parameter>``s
  (https://developers.telnyx.com/docs/voice/programmable-voice/texml-verbs/stream).
  When a Telnyx public key is configured the request's Ed25519 signature is
  verified (``wire/telnyx_webhook.py``); a bad, old or missing one gets 403.
* ``WS /telnyx/media`` — :class:`~voicerail.wire.telnyx.TelnyxStreamProtocol`.
* ``POST /plivo/answer`` — a Plivo application's answer URL: answers
  ``<Stream bidirectional="true" keepCallAlive="true"
  contentType="audio/x-mulaw;rate=8000" extraHeaders="…">``
  (https://www.plivo.com/docs/voice/xml/audiostream).
* ``WS /plivo/media`` — :class:`~voicerail.wire.plivo.PlivoStreamProtocol`.
* ``GET /vonage/answer`` — a Vonage application's answer URL: answers an NCCO
  ``connect`` to a ``websocket`` endpoint, ``audio/l16;rate=8000``, with the call's
  ``uuid`` and ``from`` as headers
  (https://developer.vonage.com/en/voice/voice-api/ncco-reference#connect).
  ``POST /vonage/event`` acknowledges Vonage's call events (204).
* ``WS /vonage/media`` — :class:`~voicerail.wire.vonage.VonageSocketProtocol`.

Admission is the Twilio webhook's: a call beyond capacity is refused at the
webhook (a hang-up in the provider's language) and recorded as ``CallRefused``.

Not done: Plivo's ``X-Plivo-Signature-V3`` and Vonage's signed-webhook JWT are
not verified yet; Telnyx Call Control (as opposed to TeXML) is not answered.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicerail.errors import ProtocolError
from voicerail.session.runtime import Runtime
from voicerail.wire import telnyx_webhook
from voicerail.wire.plivo import PlivoStreamProtocol
from voicerail.wire.telnyx import TelnyxStreamProtocol
from voicerail.wire.transport import MediaTransport
from voicerail.wire.vonage import VonageSocketProtocol

RunStream = Callable[[WebSocket, MediaTransport], Awaitable[None]]
Refuse = Callable[[str | None, str | None], None]

_HANGUP_XML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'


def provider_routes(
    runtime: Runtime,
    run_stream: RunStream,
    refuse: Refuse,
    *,
    public_url: str | None = None,
    telnyx_public_key: str | None = None,
) -> list[BaseRoute]:
    """The routes above.

    Args:
        runtime: the server's shared parts (admission, clock).
        run_stream: runs one call over an accepted socket and a transport.
        refuse: records a call refused at its webhook (call id, reason).
        public_url: the externally visible base URL, for the stream URLs.
        telnyx_public_key: base64 Ed25519 key; Telnyx webhooks are verified when set.

    Raises:
        ConfigError: ``telnyx_public_key`` is not a valid key.
    """
    key = telnyx_webhook.load_public_key(telnyx_public_key) if telnyx_public_key else None

    def stream_url(request: Request, path: str) -> str:
        if public_url:
            host = public_url.split("://", 1)[-1].rstrip("/")
        else:
            host = request.headers.get("host", "localhost")
        return f"wss://{host}{path}"

    def admitted(call_ref: str | None) -> bool:
        decision = runtime.load.admit(reservation=call_ref or None)
        if not decision.admit:
            refuse(call_ref, decision.reason)
        return decision.admit

    async def telnyx_voice(request: Request) -> Response:
        body = await request.body()
        if key is not None:
            try:
                telnyx_webhook.verify_signature(
                    key,
                    body,
                    request.headers.get(telnyx_webhook.SIGNATURE_HEADER),
                    request.headers.get(telnyx_webhook.TIMESTAMP_HEADER),
                    runtime.clock.wall(),
                )
            except ProtocolError as exc:
                return Response(f"invalid telnyx signature: {exc.message}", status_code=403)
        form = {k: str(v) for k, v in (await request.form()).items()}
        call_ref = form.get("CallSid")
        if not admitted(call_ref):
            return Response(_HANGUP_XML, media_type="application/xml")
        params = "".join(
            f"<Parameter name={quoteattr(name.lower())} value={quoteattr(form[name])}/>"
            for name in ("From", "To", "CallSid")
            if form.get(name)
        )
        url = quoteattr(stream_url(request, "/telnyx/media"))
        texml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url={url} track="inbound_track" bidirectionalMode="rtp" '
            f'bidirectionalCodec="PCMU">{params}</Stream></Connect></Response>'
        )
        return Response(texml, media_type="application/xml")

    async def plivo_answer(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        call_ref = form.get("CallUUID")
        if not admitted(call_ref):
            return Response(_HANGUP_XML, media_type="application/xml")
        # extraHeaders allows only [A-Za-z0-9] in values: the caller's digits.
        caller = "".join(ch for ch in form.get("From", "") if ch.isascii() and ch.isalnum())
        headers = f"from={caller}" if caller else ""
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response>'
            '<Stream bidirectional="true" keepCallAlive="true" audioTrack="inbound" '
            f'contentType="audio/x-mulaw;rate=8000" extraHeaders={quoteattr(headers)}>'
            f"{stream_url(request, '/plivo/media')}</Stream></Response>"
        )
        return Response(xml, media_type="application/xml")

    async def vonage_answer(request: Request) -> Response:
        query = request.query_params
        call_ref = query.get("uuid")
        if not admitted(call_ref):
            return JSONResponse([{"action": "talk", "text": "Sorry, all lines are busy."}])
        headers = {"call_uuid": call_ref or ""}
        if query.get("from"):
            headers["from"] = query["from"]
        endpoint = {
            "type": "websocket",
            "uri": stream_url(request, "/vonage/media"),
            "content-type": "audio/l16;rate=8000",
            "headers": headers,
        }
        return Response(
            json.dumps([{"action": "connect", "endpoint": [endpoint]}]),
            media_type="application/json",
        )

    async def vonage_event(request: Request) -> Response:
        await request.body()  # call status events: recorded by the stream, not here
        return Response(status_code=204)

    async def telnyx_media(websocket: WebSocket) -> None:
        await run_stream(websocket, TelnyxStreamProtocol())

    async def plivo_media(websocket: WebSocket) -> None:
        await run_stream(websocket, PlivoStreamProtocol())

    async def vonage_media(websocket: WebSocket) -> None:
        await run_stream(websocket, VonageSocketProtocol())

    return [
        Route("/telnyx/voice", telnyx_voice, methods=["POST"]),
        WebSocketRoute("/telnyx/media", telnyx_media),
        Route("/plivo/answer", plivo_answer, methods=["POST"]),
        WebSocketRoute("/plivo/media", plivo_media),
        Route("/vonage/answer", vonage_answer, methods=["GET"]),
        Route("/vonage/event", vonage_event, methods=["POST"]),
        WebSocketRoute("/vonage/media", vonage_media),
    ]
