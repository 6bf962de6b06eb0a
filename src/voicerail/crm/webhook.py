"""The generic CRM: a signed webhook the business implements.

The protocol (voicerail's own; a receiver needs only an HMAC):

* Every request is ``POST <url>`` with a JSON body and the headers
  ``Voicerail-Timestamp: <Unix seconds>`` and ``Voicerail-Signature: v1=<hex>``,
  where ``<hex>`` is HMAC-SHA256 under the shared secret of
  ``"<timestamp>." + body`` (the body's bytes as sent). Signing the timestamp
  with the body lets a receiver refuse replays older than its tolerance
  (:func:`verify_signature`, 300 s by default), as Stripe's and Slack's webhooks do.
* A lookup sends ``{"type": "lookup", "phone": "+1…"}`` and expects
  ``{"customer": {"id": "…", "fields": {…}}}`` or ``{"customer": null}``.
* A write sends ``{"type": "write", "idempotency_key", "call_id", "action",
  "properties"}`` (and ``"entity"`` when the write sets a whole record's state,
  as a booking's reschedule does) with ``Idempotency-Key: <key>``; the receiver
  must upsert on the entity when there is one, else on the key, and answer
  ``{"id": "…", "created": true|false}``.
* Errors: any status of 300 or more; 429 and 5xx are retried (``Retry-After``
  honoured), other statuses are permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from voicerail.clock import Clock, SystemClock
from voicerail.crm._http import send, status_error
from voicerail.crm.model import CRMWrite, CustomerRecord, WriteReceipt
from voicerail.errors import CRMError

TIMESTAMP_HEADER = "Voicerail-Timestamp"
SIGNATURE_HEADER = "Voicerail-Signature"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Voicerail-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "v1=" + digest


def verify_signature(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now_s: float,
    tolerance_s: float = 300.0,
) -> str | None:
    """Check a request's signature as a receiver would; None when valid, else the reason.

    Args:
        secret: the shared secret.
        timestamp: the ``Voicerail-Timestamp`` header.
        body: the raw body.
        signature: the ``Voicerail-Signature`` header.
        now_s: the receiver's Unix time.
        tolerance_s: the oldest (or furthest future) timestamp accepted, seconds.
    """
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit():
        return f"bad timestamp {timestamp!r}"
    skew_s = abs(now_s - int(timestamp))
    if skew_s > tolerance_s:
        return f"timestamp {skew_s:.0f} s away, tolerance {tolerance_s:.0f} s"
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return "signature mismatch"
    return None


class WebhookCRM:
    """The signed-webhook connector (see the module docstring).

    Args:
        client: the HTTP client (its timeout is the request deadline).
        url: the receiver's URL.
        secret: the shared HMAC secret.
        clock: the wall clock for timestamps.
    """

    name = "webhook"

    def __init__(
        self, client: httpx.AsyncClient, url: str, secret: bytes, clock: Clock | None = None
    ) -> None:
        self._client = client
        self.url = url
        self._secret = secret
        self._clock = clock or SystemClock()

    async def _post(self, payload: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        timestamp = int(self._clock.wall())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            **extra,
        }
        response = await send(
            self._client,
            self.name,
            None,
            "POST",
            self.url,
            lambda r: status_error(self.name, r, None, None),
            content=body,
            headers=headers,
        )
        try:
            decoded = response.json()
        except ValueError as exc:
            raise CRMError(
                "receiver answered no json",
                provider=self.name,
                status=response.status_code,
                code="BAD_RESPONSE",
            ) from exc
        return decoded if isinstance(decoded, dict) else {}

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        """See :meth:`voicerail.crm.model.CRMConnector.lookup_phone`."""
        answer = await self._post({"type": "lookup", "phone": phone_e164}, {})
        customer = answer.get("customer")
        if not isinstance(customer, dict):
            return None
        return CustomerRecord(str(customer.get("id", "")), dict(customer.get("fields") or {}))

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        """See :meth:`voicerail.crm.model.CRMConnector.upsert`."""
        payload = {"type": "write", **json.loads(write.to_json())}
        answer = await self._post(payload, {"Idempotency-Key": write.idempotency_key})
        return WriteReceipt(crm_id=str(answer.get("id", "")), created=bool(answer.get("created")))
