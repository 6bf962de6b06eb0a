"""What the cloud CRM connectors share: OAuth tokens that refresh, errors that classify.

Rules kept here:

1. An access token is refreshed once when the CRM says it expired (HTTP 401),
   then the request is sent again; a second 401 is a permanent error (the
   refresh token itself is bad). Refreshes are serialized: concurrent requests
   that see the same expired token refresh it once.
2. ``Retry-After`` is read as seconds or as an HTTP date (RFC 9110 §10.2.3)
   and carried in :attr:`~voicerail.errors.CRMError.retry_after_s`.
3. An httpx timeout is a transient :class:`~voicerail.errors.CRMError` with
   ``code="TIMEOUT"`` (the CRM may have committed: the relay's retry upserts);
   other transport failures are transient too.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from voicerail.errors import CRMError, ErrorClass, classify_http_status

_MAX_DETAIL_CHARS = 200


def parse_retry_after(value: str | None, now_wall_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (rule 2); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_wall_s is None else now_wall_s
    return max(0.0, when.timestamp() - now)


class OAuthToken:
    """An access token and the coroutine that gets a new one (rule 1).

    Args:
        access_token: the current token (None: refresh before the first request).
        refresh: returns a new access token; raises :class:`CRMError`.
    """

    def __init__(self, access_token: str | None, refresh: Callable[[], Awaitable[str]]) -> None:
        self.access_token = access_token
        self._refresh = refresh
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def current(self) -> str:
        """The token to send (refreshed first when there is none)."""
        if self.access_token is None:
            await self.renew(None)
        assert self.access_token is not None
        return self.access_token

    async def renew(self, stale: str | None) -> str:
        """A fresh token, unless another request already replaced ``stale``."""
        async with self._lock:
            if self.access_token is None or self.access_token == stale:
                self.access_token = await self._refresh()
                self.refreshes += 1
            return self.access_token


async def send(
    client: httpx.AsyncClient,
    provider: str,
    token: OAuthToken | None,
    method: str,
    url: str | Callable[[], str],
    classify: Callable[[httpx.Response], CRMError],
    **kwargs: Any,
) -> httpx.Response:
    """Send one request with the bearer token; refresh and resend once on 401 (rule 1).

    Args:
        url: the URL, or a function of none that builds it (read again for the
            resend: a refresh may move the instance, as Salesforce's does).
        classify: builds the error for a response whose status is 300 or more.

    Returns:
        The response, status below 300.

    Raises:
        CRMError: the CRM refused or failed, or the transport did (rule 3).
    """
    headers = dict(kwargs.pop("headers", {}) or {})
    for attempt in range(2):
        sent_token = await token.current() if token is not None else None
        if sent_token is not None:
            headers["Authorization"] = f"Bearer {sent_token}"
        try:
            target = url if isinstance(url, str) else url()
            response = await client.request(method, target, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise CRMError(
                f"timed out: {type(exc).__name__}", provider=provider, code="TIMEOUT"
            ) from exc
        except httpx.HTTPError as exc:
            raise CRMError(f"connection failed: {type(exc).__name__}", provider=provider) from exc
        if response.status_code == 401 and token is not None and attempt == 0:
            await token.renew(sent_token)
            continue
        if response.status_code >= 300:
            raise classify(response)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def status_error(
    provider: str, response: httpx.Response, code: str | None, message: str | None
) -> CRMError:
    """A :class:`CRMError` for an error response, classified by status (401 after a
    refresh is permanent; 429 transient with its ``Retry-After``)."""
    status = response.status_code
    detail = (message or " ".join(response.text.split()))[:_MAX_DETAIL_CHARS]
    return CRMError(
        f"http {status}: {detail}" if detail else f"http {status}",
        provider=provider,
        status=status,
        error_class=classify_http_status(status),
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        code=code,
    )


def transient(error: CRMError, retry_after_s: float | None = None) -> CRMError:
    """``error`` reclassified as transient (a limit that resets), with a wait."""
    error.error_class = ErrorClass.TRANSIENT
    if retry_after_s is not None and error.retry_after_s is None:
        error.retry_after_s = retry_after_s
    return error
