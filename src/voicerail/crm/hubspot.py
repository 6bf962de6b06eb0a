"""HubSpot CRM v3: find the caller among contacts, upsert writes by a unique property.

Implements (HubSpot developer docs, CRM API v3, read 2026-12):

* ``POST /crm/v3/objects/contacts/search`` with a ``filterGroups`` filter
  ``phone EQ <number>``, asking only for the properties the agent may see.
* ``POST /crm/v3/objects/{objectType}/batch/upsert`` with one input
  ``{"idProperty": <unique property>, "id": <idempotency key>, "properties": …}``:
  HubSpot creates the record when no record has that value of the unique
  property and updates it otherwise (``results[0].new`` says which). The unique
  property (``hasUniqueValue: true``, created once per portal) is the only
  idempotency HubSpot offers: it has no idempotency header.
* OAuth 2 refresh: ``POST /oauth/v1/token`` (form: ``grant_type=refresh_token``,
  ``client_id``, ``client_secret``, ``refresh_token``); a private app's static
  token works too (then a 401 is permanent).
* Errors: ``{"status": "error", "message", "category", "correlationId"}``;
  429 adds ``errorType: "RATE_LIMIT"`` and ``policyName`` (``TEN_SECONDLY_ROLLING``
  for the 10-second window, ``DAILY``) and the ``X-HubSpot-RateLimit-*`` headers.
  A 10-second-window 429 without ``Retry-After`` waits out the window
  (``X-HubSpot-RateLimit-Interval-Milliseconds``, 10 s by default); the daily
  limit waits an hour and tries again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from voicerail.crm._http import OAuthToken, send, status_error, transient
from voicerail.crm.model import CRMWrite, CustomerRecord, WriteAction, WriteReceipt
from voicerail.errors import CRMError, ErrorClass

DEFAULT_OBJECT_TYPES: Mapping[WriteAction, str] = {
    WriteAction.BOOKING: "meetings",
    WriteAction.LEAD: "leads",
    WriteAction.CALL_SUMMARY: "calls",
    WriteAction.DISPOSITION: "calls",
    WriteAction.HANDOFF_SUMMARY: "notes",
    WriteAction.CALLBACK: "tasks",
}
_DAILY_WAIT_S = 3600.0


class HubSpotCRM:
    """The HubSpot connector (see the module docstring).

    Args:
        client: the HTTP client (its timeout is the request deadline).
        base_url: ``https://api.hubapi.com``, or a fake's URL in tests.
        access_token: a private app token, or the current OAuth access token.
        oauth: ``{"client_id", "client_secret", "refresh_token"}`` to refresh with.
        properties: the contact properties to ask for (the context gate's fields).
        unique_property: the unique property writes upsert on.
        object_types: the object type per write action.
    """

    name = "hubspot"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str = "https://api.hubapi.com",
        access_token: str | None = None,
        oauth: Mapping[str, str] | None = None,
        properties: Sequence[str] = ("firstname", "lastname", "phone"),
        unique_property: str = "voicerail_idempotency_key",
        object_types: Mapping[WriteAction, str] = DEFAULT_OBJECT_TYPES,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._oauth = dict(oauth) if oauth else None
        self._token = OAuthToken(access_token, self._refresh) if self._oauth else None
        self._static_token = None if self._oauth else access_token
        self.properties = tuple(properties)
        self.unique_property = unique_property
        self.object_types = dict(object_types)

    @property
    def refreshes(self) -> int:
        """How many times the OAuth token was refreshed."""
        return self._token.refreshes if self._token else 0

    async def _refresh(self) -> str:
        assert self._oauth is not None
        response = await send(
            self._client,
            self.name,
            None,
            "POST",
            f"{self._base}/oauth/v1/token",
            self._error,
            data={"grant_type": "refresh_token", **self._oauth},
        )
        return str(response.json()["access_token"])

    async def _request(self, method: str, path: str, body: Any) -> dict[str, Any]:
        headers = {}
        if self._static_token:
            headers["Authorization"] = f"Bearer {self._static_token}"
        response = await send(
            self._client,
            self.name,
            self._token,
            method,
            self._base + path,
            self._error,
            json=body,
            headers=headers,
        )
        decoded = response.json()
        return decoded if isinstance(decoded, dict) else {}

    def _error(self, response: httpx.Response) -> CRMError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("policyName") or body.get("errorType") or body.get("category")
        error = status_error(self.name, response, code, body.get("message"))
        if response.status_code == 429:
            if body.get("policyName") == "DAILY":
                return transient(error, _DAILY_WAIT_S)
            interval_ms = response.headers.get("x-hubspot-ratelimit-interval-milliseconds")
            window_s = float(interval_ms) / 1000 if interval_ms and interval_ms.isdigit() else 10.0
            return transient(error, window_s)
        if response.status_code == 401:
            error.error_class = ErrorClass.PERMANENT
        return error

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        """See :meth:`voicerail.crm.model.CRMConnector.lookup_phone`."""
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone_e164}]}
            ],
            "properties": list(self.properties),
            "limit": 1,
        }
        found = await self._request("POST", "/crm/v3/objects/contacts/search", body)
        results = found.get("results") or []
        if not results:
            return None
        first = results[0]
        fields = {k: v for k, v in (first.get("properties") or {}).items() if v is not None}
        return CustomerRecord(crm_id=str(first.get("id")), fields=fields)

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        """See :meth:`voicerail.crm.model.CRMConnector.upsert`."""
        object_type = self.object_types[write.action]
        properties = {k: _text(v) for k, v in write.properties.items()}
        properties[self.unique_property] = write.record_key
        body = {
            "inputs": [
                {
                    "idProperty": self.unique_property,
                    "id": write.record_key,
                    "properties": properties,
                }
            ]
        }
        answer = await self._request("POST", f"/crm/v3/objects/{object_type}/batch/upsert", body)
        results = answer.get("results") or []
        if not results:
            raise CRMError(
                "batch upsert answered no result", provider=self.name, code="EMPTY_RESULT"
            )
        return WriteReceipt(crm_id=str(results[0].get("id")), created=bool(results[0].get("new")))


def _text(value: Any) -> str:
    # HubSpot property values are strings on the wire.
    return value if isinstance(value, str) else str(value)
