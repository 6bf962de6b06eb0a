"""A WebSocket client that speaks ASGI messages straight to an app, on the test's loop.

Starlette's ``TestClient`` runs the app on a thread of its own; a test that needs
the app on its own event loop (a fake clock, several sockets interleaved, a
server-side close observed as it happens) uses :class:`AsgiWebSocket` instead.
Messages follow the ASGI WebSocket spec
(https://asgi.readthedocs.io/en/latest/specs/www.html#websocket, version 2.4).

Every wait has a deadline (``guard_s``), so a hung app fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
from typing import Any

HANG_GUARD_S = 5.0
"""Default deadline of each wait, in seconds of the event loop's clock."""


class AsgiWebSocket:
    """One WebSocket connection to ``app``, opened (``websocket.connect``) at once.

    Args:
        app: an ASGI 3 application.
        path: the request path, e.g. ``"/twilio/media"``.
        origin: the ``Origin`` header, or None to send none.
        guard_s: the deadline of each wait, in seconds.
    """

    def __init__(
        self,
        app: Any,
        path: str = "/twilio/media",
        *,
        origin: str | None = None,
        guard_s: float = HANG_GUARD_S,
    ) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._guard_s = guard_s
        headers = [(b"host", b"testserver")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "scheme": "ws",
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
        }
        self._to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self._to_app.get, self._from_app.put))

    async def receive(self) -> dict[str, Any]:
        """The next ASGI message the app sent.

        Raises:
            TimeoutError: none within ``guard_s``.
        """
        return await asyncio.wait_for(self._from_app.get(), self._guard_s)

    async def accepted(self) -> bool:
        """Whether the app's first message accepts the connection."""
        return (await self.receive())["type"] == "websocket.accept"

    def send(self, frame: str | bytes) -> None:
        """Queue one text or binary frame for the app."""
        key = "text" if isinstance(frame, str) else "bytes"
        self._to_app.put_nowait({"type": "websocket.receive", key: frame})

    async def until(self, wanted: str) -> dict[str, Any]:
        """Skip the app's messages up to the first of type ``wanted``; that message.

        Raises:
            TimeoutError: a wait for the next message passed ``guard_s``.
        """
        while True:
            message = await self.receive()
            if message["type"] == wanted:
                return message

    async def finished(self) -> None:
        """Wait for the app's handler to return.

        Raises:
            TimeoutError: it had not returned within ``guard_s``.
        """
        await asyncio.wait_for(self.task, self._guard_s)

    async def closed(self) -> dict[str, Any]:
        """Skip what the app sends until it closes the socket and returns; the close
        message.

        Raises:
            TimeoutError: as :meth:`until` and :meth:`finished`.
        """
        message = await self.until("websocket.close")
        await self.finished()
        return message

    async def hang_up(self) -> None:
        """Disconnect as a client does (code 1000) and wait for the handler to return.

        Raises:
            TimeoutError: as :meth:`finished`.
        """
        self._to_app.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await self.finished()
