"""The browser call page: try the agent from a browser's microphone and speaker.

Routes, served only when ``ServerSettings.browser_calls`` is set
(``voicerail serve --browser-calls``):

* ``GET /call`` — the page (``server/call_page/call.html``): a call button, the
  live transcript (caller and agent turns), a keypad and a hang-up button.
* ``GET /call/page.js`` and ``GET /call/worklet.js`` — its script and its
  AudioWorklet processors (microphone capture in 20 ms blocks; agent playback
  with marks reported when rendered, and a clear that empties the queue).
* ``WS /call/media`` — one call per socket, in the protocol of
  :class:`~voicerail.wire.browser.BrowserCallProtocol` (why a WebSocket and not
  WebRTC is argued there), run by the same call driver as every provider.

Rules (the page places calls that cost STT, LLM and TTS time, so it is guarded):

1. Off by default. With access configured (an API key or a dashboard password,
   ``server/auth.py``), ``/call`` and everything under it need the dashboard's
   login like ``/dashboard`` does; the page redirects to ``/login``, the socket is
   closed with 1008. Without access configured ``voicerail serve`` refuses
   ``--browser-calls`` on a non-loopback host (``cli.py``).
2. The socket's ``Origin`` must be this server (its ``Host``, or ``public_url``):
   a browser sends the login cookie with a cross-site WebSocket too, so without
   this check any web page the user visits could place calls (cross-site
   WebSocket hijacking). A refused socket is closed before the handshake (403).
3. Admission, the pending-socket cap, the stream deadlines and the real-time
   rule are those of every media stream (``server/app.py``, ``wire/stream_limits.py``):
   a page beyond capacity is closed with 1013 and the call is ``CallRefused``.
4. Every response carries a Content-Security-Policy allowing only this origin's
   scripts and sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicerail.wire.browser import BrowserCallProtocol
from voicerail.wire.transport import MediaTransport

RunStream = Callable[[WebSocket, MediaTransport], Awaitable[None]]

#: WebSocket close code "Policy Violation" (RFC 6455 §7.4.1).
CLOSE_POLICY_VIOLATION = 1008
_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' "
    "'unsafe-inline'; media-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_TYPES = {
    "call.html": "text/html; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "worklet.js": "text/javascript; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return resources.files("voicerail.server").joinpath("call_page", name).read_bytes()


def same_origin(origin: str | None, host: str | None, public_url: str | None = None) -> bool:
    """True when a WebSocket's ``Origin`` header names this server (rule 2).

    Args:
        origin: the ``Origin`` header (``http://host:port``), None when absent.
        host: the ``Host`` header the request came with.
        public_url: the externally visible base URL, when behind a proxy.
    """
    if not origin:
        return False  # browsers always send it; a non-browser peer has no use for /call
    netloc = urlsplit(origin).netloc.lower()
    allowed = {h.lower() for h in (host,) if h}
    if public_url:
        allowed.add(urlsplit(public_url).netloc.lower())
    return bool(netloc) and netloc in allowed


def browser_call_routes(run_stream: RunStream, *, public_url: str | None = None) -> list[BaseRoute]:
    """The routes above. ``run_stream`` runs one call over an accepted socket."""
    pages = {name: _asset(name) for name in _TYPES}

    def serve(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}
            return Response(pages[name], media_type=_TYPES[name], headers=headers)

        return endpoint

    async def media(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not same_origin(origin, websocket.headers.get("host"), public_url):
            await websocket.close(code=CLOSE_POLICY_VIOLATION)
            return
        await run_stream(websocket, BrowserCallProtocol(f"web_{uuid.uuid4().hex[:20]}"))

    return [
        Route("/call", serve("call.html"), methods=["GET"]),
        Route("/call/page.js", serve("page.js"), methods=["GET"]),
        Route("/call/worklet.js", serve("worklet.js"), methods=["GET"]),
        WebSocketRoute("/call/media", media),
    ]
