"""Salesforce REST: find the caller with SOQL, upsert writes by an external id field.

Implements (Salesforce REST API Developer Guide, API v60.0, read 2026-12):

* ``GET /services/data/v60.0/query?q=SELECT Id, … FROM Contact WHERE Phone =
  '<number>' LIMIT 1``, selecting only the fields the agent may see.
* ``PATCH /services/data/v60.0/sobjects/{sObject}/{ExternalIdField}/{value}``:
  upsert by external id; 201 ``{"id", "success", "errors", "created": true}``
  when created, 200 with ``created: false`` when updated (API ≥ 46). Salesforce
  accepts no idempotency header: the external id field *is* the key.
* OAuth 2 refresh: ``POST /services/oauth2/token`` (form: ``grant_type=
  refresh_token``, ``client_id``, ``client_secret``, ``refresh_token``) on the
  login host; the answer carries ``access_token`` and ``instance_url``.
* Errors: a JSON list ``[{"message", "errorCode", "fields"}]``. 401
  ``INVALID_SESSION_ID`` (expired session) → refresh once and resend; 403
  ``REQUEST_LIMIT_EXCEEDED`` (the org's rolling 24-hour API limit) → transient,
  retried after ``limit_wait_s``; 503 ``SERVER_UNAVAILABLE`` → transient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from voicerail.crm._http import OAuthToken, send, status_error, transient
from voicerail.crm.model import CRMWrite, CustomerRecord, WriteAction, WriteReceipt
from voicerail.errors import CRMError, ErrorClass

DEFAULT_SOBJECTS: Mapping[WriteAction, str] = {
    WriteAction.BOOKING: "Event",
    WriteAction.LEAD: "Lead",
    WriteAction.CALL_SUMMARY: "Task",
    WriteAction.DISPOSITION: "Task",
    WriteAction.HANDOFF_SUMMARY: "Task",
    WriteAction.CALLBACK: "Task",
}


class SalesforceCRM:
    """The Salesforce connector (see the module docstring).

    Args:
        client: the HTTP client (its timeout is the request deadline).
        instance_url: ``https://<my domain>.my.salesforce.com``, or a fake's URL.
        access_token: the current access token (None: refresh first).
        oauth: ``{"client_id", "client_secret", "refresh_token"}``; None when the
            token cannot be refreshed (then a 401 is permanent).
        login_url: where tokens are refreshed (``https://login.salesforce.com``).
        fields: the Contact fields to select (the context gate's fields).
        external_id_field: the external id field writes upsert on.
        sobjects: the sObject per write action.
        api_version: ``"v60.0"``.
        limit_wait_s: how long to wait after ``REQUEST_LIMIT_EXCEEDED``.
    """

    name = "salesforce"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        instance_url: str,
        access_token: str | None = None,
        oauth: Mapping[str, str] | None = None,
        login_url: str = "https://login.salesforce.com",
        fields: Sequence[str] = ("FirstName", "LastName", "Phone"),
        external_id_field: str = "Voicerail_Key__c",
        sobjects: Mapping[WriteAction, str] = DEFAULT_SOBJECTS,
        api_version: str = "v60.0",
        limit_wait_s: float = 300.0,
    ) -> None:
        self._client = client
        self.instance_url = instance_url.rstrip("/")
        self._oauth = dict(oauth) if oauth else None
        self._login = login_url.rstrip("/")
        self._token = OAuthToken(access_token, self._refresh) if self._oauth else None
        self._static_token = None if self._oauth else access_token
        self.fields = tuple(fields)
        self.external_id_field = external_id_field
        self.sobjects = dict(sobjects)
        self.api_version = api_version
        self.limit_wait_s = limit_wait_s

    @property
    def refreshes(self) -> int:
        """How many times the session was refreshed."""
        return self._token.refreshes if self._token else 0

    async def _refresh(self) -> str:
        assert self._oauth is not None
        response = await send(
            self._client,
            self.name,
            None,
            "POST",
            f"{self._login}/services/oauth2/token",
            self._error,
            data={"grant_type": "refresh_token", **self._oauth},
        )
        body = response.json()
        self.instance_url = str(body.get("instance_url") or self.instance_url).rstrip("/")
        return str(body["access_token"])

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {}
        if self._static_token:
            headers["Authorization"] = f"Bearer {self._static_token}"
        # The URL is built per attempt: a refresh may move the instance.
        return await send(
            self._client,
            self.name,
            self._token,
            method,
            lambda: f"{self.instance_url}/services/data/{self.api_version}{path}",
            self._error,
            headers=headers,
            **kwargs,
        )

    def _error(self, response: httpx.Response) -> CRMError:
        try:
            body = response.json()
        except ValueError:
            body = None
        first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
        if isinstance(body, dict):  # the token endpoint's {"error", "error_description"}
            first = {"errorCode": body.get("error"), "message": body.get("error_description")}
        code = first.get("errorCode")
        error = status_error(self.name, response, code, first.get("message"))
        if code == "REQUEST_LIMIT_EXCEEDED":
            return transient(error, self.limit_wait_s)
        if response.status_code == 401:
            error.error_class = ErrorClass.PERMANENT
        return error

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        """See :meth:`voicerail.crm.model.CRMConnector.lookup_phone`."""
        select = ", ".join(dict.fromkeys(("Id", *self.fields)))
        soql = f"SELECT {select} FROM Contact WHERE Phone = '{_soql_literal(phone_e164)}' LIMIT 1"
        response = await self._request("GET", "/query", params={"q": soql})
        records = response.json().get("records") or []
        if not records:
            return None
        first = records[0]
        fields = {k: v for k, v in first.items() if k not in ("attributes", "Id") and v is not None}
        return CustomerRecord(crm_id=str(first.get("Id")), fields=fields)

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        """See :meth:`voicerail.crm.model.CRMConnector.upsert`."""
        sobject = self.sobjects[write.action]
        key = quote(write.record_key, safe="")
        response = await self._request(
            "PATCH",
            f"/sobjects/{sobject}/{self.external_id_field}/{key}",
            json=dict(write.properties),
        )
        body = response.json() if response.content else {}
        return WriteReceipt(crm_id=str(body.get("id", "")), created=response.status_code == 201)


def _soql_literal(value: str) -> str:
    # SOQL string literals escape backslash and single quote with a backslash.
    return value.replace("\\", "\\\\").replace("'", "\\'")
