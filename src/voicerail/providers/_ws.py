"""Shared WebSocket plumbing for the cloud adapters: connect and map failures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicerail.errors import ErrorClass, ProviderError, classify_http_status

# Close codes a server uses for "try again" (RFC 6455 §7.4.1: 1011 internal
# error, 1012 service restart, 1013 try again later, 1006 abnormal closure).
_TRANSIENT_CLOSE_CODES = {1006, 1011, 1012, 1013, 1014}


@contextlib.asynccontextmanager
async def open_socket(
    url: str, provider: str, headers: dict[str, str] | None = None, open_timeout_s: float = 5.0
) -> AsyncIterator[ClientConnection]:
    """Connect, turning handshake and transport failures into :class:`ProviderError`."""
    try:
        async with connect(
            url, additional_headers=headers or {}, open_timeout=open_timeout_s, max_size=2**24
        ) as socket:
            yield socket
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise ProviderError(
            f"handshake rejected with http {status}",
            provider=provider,
            status=status,
            error_class=classify_http_status(status),
        ) from exc
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        error_class = (
            ErrorClass.TRANSIENT if code in _TRANSIENT_CLOSE_CODES else ErrorClass.PERMANENT
        )
        raise ProviderError(
            f"connection closed with code {code}",
            provider=provider,
            status=code,
            error_class=error_class,
        ) from exc
    except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
        raise ProviderError(f"cannot connect: {exc!r}", provider=provider) from exc
