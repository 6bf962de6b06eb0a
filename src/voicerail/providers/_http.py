"""Shared HTTP plumbing for the OpenAI-compatible adapters: map failures to ProviderError.

Error bodies follow OpenAI's envelope (https://platform.openai.com/docs/guides/error-codes,
read 2026-11): ``{"error": {"message", "type", "param", "code"}}``. vLLM, Ollama
and llama.cpp server answer the same shape, sometimes with the HTTP status as an
integer ``code``. Rules:

1. An HTTP status is classified by :func:`~voicerail.errors.classify_http_status`,
   except that a 429 whose ``code`` or ``type`` is ``insufficient_quota`` is
   permanent: the account is out of credit and retrying cannot help.
2. An error object inside a stream is classified by its integer ``code`` when it
   has one, as permanent when its ``type`` is ``invalid_request_error``, and as
   transient otherwise.
3. A timeout of httpx (connect, read, write, pool) is a :class:`ProviderTimeout`;
   every other transport failure (refused, reset, truncated body) is transient.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import httpx

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout, classify_http_status

_MAX_DETAIL_CHARS = 200
_QUOTA = "insufficient_quota"


def _error_object(body: str) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):  # some compatible servers send {"error": "text"}
        return {"message": error}
    return {}


def status_error(provider: str, status: int, body: str) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error response (rule 1).

    Args:
        provider: configured provider name.
        status: the HTTP status.
        body: the response body, JSON in OpenAI's envelope or plain text.
    """
    error = _error_object(body)
    detail = str(error.get("message") or " ".join(body.split()))[:_MAX_DETAIL_CHARS]
    error_class = classify_http_status(status)
    if status == 429 and _QUOTA in (error.get("code"), error.get("type")):
        error_class = ErrorClass.PERMANENT
    return ProviderError(
        f"http {status}: {detail}" if detail else f"http {status}",
        provider=provider,
        status=status,
        error_class=error_class,
    )


def stream_error(provider: str, error: Any) -> ProviderError:
    """The :class:`ProviderError` for an error object sent inside a stream (rule 2)."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    if status is not None:
        error_class = classify_http_status(status)
    elif error.get("type") == "invalid_request_error":
        error_class = ErrorClass.PERMANENT
    else:
        error_class = ErrorClass.TRANSIENT
    detail = str(error.get("message") or error.get("type") or "unknown")[:_MAX_DETAIL_CHARS]
    return ProviderError(
        f"error in stream: {detail}", provider=provider, status=status, error_class=error_class
    )


def transport_error(provider: str, exc: httpx.HTTPError, timeout_s: float) -> ProviderError:
    """The :class:`ProviderError` for an httpx failure (rule 3)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    detail = detail[:_MAX_DETAIL_CHARS]
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"timed out: {detail}", provider=provider, deadline_s=timeout_s)
    return ProviderError(f"connection failed: {detail}", provider=provider)


def bearer_headers(api_key: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``Authorization: Bearer`` (when there is a key) plus ``extra`` headers."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    headers.update(extra or {})
    return headers


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: do it once per process,
    # not once per client. A context is safe to share once configured.
    return httpx.create_ssl_context()


def new_client(timeout_s: float) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with ``timeout_s`` for connect, read, write and pool."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), verify=_tls_context())
