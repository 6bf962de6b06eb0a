"""Shared WebSocket plumbing for the cloud adapters: connect, receive, map failures.

Rules kept here, for every WebSocket provider (close codes: RFC 6455 §7.4.1):

1. A refused handshake is classified by its HTTP status with
   :func:`~voicerail.errors.classify_http_status` (401/403/400 permanent; 429 and
   5xx transient).
2. A close code saying the request itself was bad is permanent: the same request
   would fail again (1002 protocol error, 1003 unsupported data, 1007 invalid
   payload, 1008 policy violation, 1009 message too big, 1010 missing extension).
   Every other close (1000/1001 before the reply was complete, 1006 no close frame,
   1011 internal error, 1012 restart, 1013 try again later, 1014 bad gateway, and
   private 4xxx codes) is transient.
3. No message within the adapter's ``timeout_s`` raises
   :class:`~voicerail.errors.ProviderTimeout`; no handshake within
   ``open_timeout_s`` too.
4. Cancellation is never swallowed: ``aclose()`` or :class:`asyncio.CancelledError`
   closes the socket (waiting at most ``CLOSE_TIMEOUT_S`` for the peer) and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidStatus,
    WebSocketException,
)

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout, classify_http_status

PERMANENT_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
CLOSE_TIMEOUT_S = 0.5  # a barge-in must not wait on a slow peer's close handshake
_MAX_MESSAGE_NUM_BYTES = 2**24  # a few seconds of base64 PCM fit easily
_MAX_DETAIL_CHARS = 200


def classify_close_code(code: int) -> ErrorClass:
    """Map a WebSocket close code to an :class:`ErrorClass` (rule 2 above)."""
    return ErrorClass.PERMANENT if code in PERMANENT_CLOSE_CODES else ErrorClass.TRANSIENT


def closed_error(exc: ConnectionClosed, provider: str) -> ProviderError:
    """The :class:`ProviderError` for a connection the peer closed or lost.

    Args:
        exc: what ``websockets`` raised; without a received close frame the code
            is 1006 (abnormal closure).
        provider: configured provider name.
    """
    code = exc.rcvd.code if exc.rcvd is not None else 1006
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    detail = f" ({reason[:_MAX_DETAIL_CHARS]})" if reason else ""
    return ProviderError(
        f"connection closed with code {code}{detail}",
        provider=provider,
        status=code,
        error_class=classify_close_code(code),
    )


def _handshake_error(exc: InvalidStatus, provider: str, error_header: str | None) -> ProviderError:
    response = exc.response
    status = response.status_code
    detail = response.headers.get(error_header, "") if error_header else ""
    if not detail and response.body:
        detail = response.body.decode(errors="replace")
    detail = " ".join(detail.split())[:_MAX_DETAIL_CHARS]
    return ProviderError(
        f"handshake rejected with http {status}" + (f": {detail}" if detail else ""),
        provider=provider,
        status=status,
        error_class=classify_http_status(status),
    )


@contextlib.asynccontextmanager
async def open_socket(
    url: str,
    *,
    provider: str,
    headers: dict[str, str] | None = None,
    open_timeout_s: float = 5.0,
    error_header: str | None = None,
) -> AsyncIterator[ClientConnection]:
    """Connect to ``url`` and close the socket on the way out, whatever happens.

    Args:
        url: ``wss://`` (or ``ws://`` for a local fake) URL with its query.
        provider: configured provider name, for errors.
        headers: extra handshake headers (authentication, API version).
        open_timeout_s: longest wait for the TCP, TLS and HTTP upgrade handshakes.
        error_header: response header in which the provider explains a refused
            handshake (Deepgram's ``dg-error``); the body is used otherwise.

    Yields:
        The open connection.

    Raises:
        ProviderError: the handshake was refused (``status`` is the HTTP status),
            the connection failed, or the peer closed it abnormally while in use
            (``status`` is the close code).
        ProviderTimeout: no handshake within ``open_timeout_s``.
    """
    try:
        socket = await connect(
            url,
            additional_headers=headers or {},
            open_timeout=open_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=_MAX_MESSAGE_NUM_BYTES,
        )
    except InvalidStatus as exc:
        raise _handshake_error(exc, provider, error_header) from exc
    except TimeoutError as exc:
        raise ProviderTimeout(
            f"no handshake within {open_timeout_s} s", provider=provider, deadline_s=open_timeout_s
        ) from exc
    except (OSError, WebSocketException) as exc:
        raise ProviderError(
            f"cannot connect: {type(exc).__name__}: {exc}", provider=provider
        ) from exc
    try:
        yield socket
    except ConnectionClosed as exc:
        raise closed_error(exc, provider) from exc
    finally:
        await socket.close()


async def receive_json(
    socket: ClientConnection, *, provider: str, timeout_s: float | None
) -> dict[str, Any] | None:
    """Receive the next message, which must be a JSON object in a text frame.

    Args:
        socket: an open connection.
        provider: configured provider name, for errors.
        timeout_s: longest wait for the message; None waits for ever (the caller
            then keeps its own deadline).

    Returns:
        The decoded object, or None when the peer closed the connection normally
        (code 1000 or 1001); whether that was too early is the caller's call.

    Raises:
        ProviderTimeout: no message within ``timeout_s``.
        ProviderError: the frame was binary or not a JSON object (transient: the
            peer misbehaved), or the peer closed the connection abnormally.
    """
    try:
        async with asyncio.timeout(timeout_s):
            raw = await socket.recv()
    except TimeoutError:
        raise ProviderTimeout(
            f"no message within {timeout_s} s", provider=provider, deadline_s=timeout_s or 0.0
        ) from None
    except ConnectionClosedOK:
        return None
    except ConnectionClosed as exc:
        raise closed_error(exc, provider) from exc
    if isinstance(raw, bytes):
        raise ProviderError(
            f"expected a json text frame, got {len(raw)} binary bytes", provider=provider
        )
    try:
        message = json.loads(raw)
    except ValueError:
        raise ProviderError(
            f"invalid json in a {len(raw)}-character frame", provider=provider
        ) from None
    if not isinstance(message, dict):
        raise ProviderError(
            f"expected a json object, got {type(message).__name__}", provider=provider
        )
    return message
