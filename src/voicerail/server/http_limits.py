"""A deadline on each HTTP request head (slowloris), as a uvicorn protocol.

What uvicorn 0.3x offers, read in its source (``uvicorn/protocols/http/
httptools_impl.py``, 0.55) and settings (https://www.uvicorn.org/settings/,
read 2026-12):

* ``timeout_keep_alive`` (5 s) closes a connection idle *between* requests, but
  every received byte cancels it, so headers trickled a byte at a time keep a
  connection forever; and no timer runs before the first request at all.
* ``h11_max_incomplete_event_size`` bounds a request head's *size*, not its time,
  and only for the h11 implementation (we run httptools, the ``[standard]`` one).
* ``limit_concurrency`` refuses new requests with 503 beyond a count: a slow
  attacker then holds every slot.

So no setting bounds the *time* a request head may take (issue 11: one header
every 10 s was still open after 300 s). :func:`header_timeout_protocol` builds a
subclass of uvicorn's httptools protocol that does, with these rules:

1. A deadline of ``timeout_s`` starts when a connection opens, and again with the
   first byte of each later request on it.
2. It ends when the request head is complete (headers parsed, including a
   WebSocket upgrade's), or the connection is lost.
3. At the deadline the server answers ``408 Request Timeout`` and closes.

Bodies have their own deadline in ``server/limits.py``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_408 = b"HTTP/1.1 408 Request Timeout\r\n"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with rules 1 to 3; see the module docstring.

    Use :func:`header_timeout_protocol` to set the deadline.
    """

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._header_timer = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed
        )

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        message = f"request head not received within {self.header_timeout_s} s".encode()
        self.transport.write(
            _STATUS_408
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: "
            + str(len(message)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + message
        )
        self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with a ``timeout_s`` head deadline.

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """
    if not timeout_s > 0:
        raise ValueError(f"header timeout must be positive, got {timeout_s} s")
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s}
    )
