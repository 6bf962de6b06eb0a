"""Limits that bound what an idle, slow or abusive peer can cost the server.

:class:`ServerLimits` holds every duration, rate and size in one place;
``ServerSettings.limits`` carries it. The rules live where they apply:

* media streams: ``wire/stream_limits.py`` (start deadline, media silence, the
  real-time rate), enforced by the call driver;
* request bodies: :class:`BodyLimitMiddleware` here (size cap and a read deadline);
* request heads (slowloris): ``server/http_limits.py``, a uvicorn protocol;
* logins: ``server/login_throttle.py``.

Rules :class:`BodyLimitMiddleware` keeps:

1. A request whose ``Content-Length`` exceeds ``max_body_bytes`` gets 413 before
   any of its body is read.
2. A body without a length, or longer than it said, is counted as it is read; the
   read that crosses ``max_body_bytes`` ends the request with 413.
3. The whole body must arrive within ``body_timeout_s`` of the first read, else 408.
   Once the last body message is in, reads (waiting for a disconnect) pass through.
4. When the response has already started, the middleware cannot answer; it closes
   the request by letting the error propagate to the server.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicerail.wire.stream_limits import StreamLimits


@dataclass(frozen=True)
class ServerLimits:
    """Every limit of one server, with defaults chosen for Twilio traffic.

    Attributes:
        stream: the media streams' deadlines and rate (``wire/stream_limits.py``).
        max_pending_streams: sockets accepted and not yet past ``start``; more are
            refused at the handshake. Twilio sends ``start`` within a second, so on
            a healthy server this number stays near the calls arriving per second.
        max_body_bytes: the largest request body. Twilio's webhook forms are a
            few kilobytes and the login form less; 64 KiB leaves ample room.
        body_timeout_s: seconds to read a whole body once reading began.
        header_timeout_s: seconds from a connection's (or a request's) first byte
            to the end of its request head; enforced by ``server/http_limits.py``.
        login_failures_per_client: failed logins from one client address within
            ``login_window_s`` before that address is locked out.
        login_failures_per_account: failed logins from all addresses within
            ``login_window_s`` before the login itself is locked out (the server
            has one account: the configured key or password).
        login_window_s: the window failures are counted in, seconds.
        login_lockout_s: how long a lockout lasts, seconds.
    """

    stream: StreamLimits = field(default_factory=StreamLimits)
    max_pending_streams: int = 64
    max_body_bytes: int = 64 * 1024
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    login_failures_per_client: int = 5
    login_failures_per_account: int = 20
    login_window_s: float = 300.0
    login_lockout_s: float = 300.0

    def __post_init__(self) -> None:
        """Check every limit.

        Raises:
            ValueError: a count below 1 or a duration not above 0, named.
        """
        values = {k: v for k, v in asdict(self).items() if k != "stream"}
        values.update({f"stream.{k}": v for k, v in asdict(self.stream).items()})
        for name, value in values.items():
            if name.endswith("_s") and not value > 0:
                raise ValueError(f"{name} must be above 0 s, got {value}")
            if not name.endswith("_s") and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


class _BodyRefused(Exception):
    """Raised inside ``receive`` to stop the app; carries the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimitMiddleware:
    """Pure ASGI middleware enforcing rules 1 to 4 on HTTP requests.

    Args:
        app: the wrapped application.
        max_body_bytes: rule 1 and 2's cap.
        body_timeout_s: rule 3's deadline, seconds (event loop time).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send, 413, self._too_large(declared))
            return
        read_bytes = 0
        body_done = False
        deadline: float | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal read_bytes, body_done, deadline
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyRefused(
                    408, f"request body not received within {self.body_timeout_s} s"
                ) from None
            if message["type"] == "http.request":
                read_bytes += len(message.get("body", b""))
                if read_bytes > self.max_body_bytes:
                    raise _BodyRefused(413, self._too_large(read_bytes))
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyRefused as refused:
            if started:
                raise  # rule 4
            await self._refuse(scope, receive, send, refused.status, refused.message)

    def _too_large(self, num_bytes: int) -> str:
        return f"request body of {num_bytes} bytes or more exceeds {self.max_body_bytes} bytes"

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
        # Connection: close, so the server does not wait for the rest of the body.
        response = PlainTextResponse(text, status_code=status, headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            # A huge or malformed length is as good as too large.
            return int(text) if text.isdigit() and len(text) < 19 else 2**63
    return None
