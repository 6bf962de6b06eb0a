"""Fake HubSpot, Salesforce and signed-webhook CRMs (Starlette, served by uvicorn on loopback).

Each speaks the requests and error formats its connector documents
(:mod:`voicerail.crm.hubspot`, :mod:`voicerail.crm.salesforce`,
:mod:`voicerail.crm.webhook`), keeps records keyed by the unique property /
external id / idempotency key, and counts, per key, the upserts that *created*
a record (``creates``: more than one is a duplicate). Shared failure modes:

* ``fail_next``: statuses answered to the next writes, in order, in the CRM's
  error format (429 with ``Retry-After: retry_after_s``; for HubSpot, 429 with
  ``policyName`` ``TEN_SECONDLY_ROLLING``; for Salesforce 403
  ``REQUEST_LIMIT_EXCEEDED``; 5xx).
* ``commit_then_delay_s``: apply the next write, then wait that long before
  answering (a client with a shorter timeout sees a timeout after the commit).
* ``expire_token()``: the current access token stops working (HubSpot 401
  ``EXPIRED_AUTHENTICATION``, Salesforce 401 ``INVALID_SESSION_ID``) until the
  client refreshes it with the right refresh token.
* HubSpot only: ``ten_second_limit`` requests per rolling 10 s of ``clock()``.

Usage::

    fake = FakeHubSpot()
    async with run_fake_crm(build_hubspot_app(fake)) as base_url:
        crm = HubSpotCRM(client, base_url=base_url, oauth=fake.oauth())
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicerail.crm.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

# The fakes reuse the OpenAI fake's server: it stops at once instead of polling.
from voicerail.testing.fake_servers.openai import _Server


@dataclass
class _FakeCRM:
    """Behaviour and records the three fakes share (see the module docstring)."""

    fail_next: list[int] = field(default_factory=list)
    retry_after_s: int = 1
    commit_then_delay_s: float = 0.0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str]] = field(default_factory=list)
    client_id: str = "client-id"
    client_secret: str = "client-secret"
    refresh_token: str = "refresh-token"
    access_token: str = "token-0"
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def oauth(self) -> dict[str, str]:
        """The OAuth settings a connector needs to refresh tokens here."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }

    def expire_token(self) -> None:
        """The current access token stops working."""
        self.access_token = f"token-{next(self._tokens)}-unissued"

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.access_token}"

    def _refresh(self, form: dict[str, str]) -> str | None:
        expected = {"grant_type": "refresh_token", **self.oauth()}
        if any(form.get(k) != v for k, v in expected.items()):
            return None
        self.access_token = f"token-{next(self._tokens)}"
        return self.access_token

    @property
    def duplicates(self) -> int:
        """Records created more than once for one key (must be 0)."""
        return sum(n - 1 for n in self.creates.values() if n > 1)

    def _apply(self, key: str, properties: dict[str, Any]) -> tuple[str, bool]:
        created = key not in self.records
        record = self.records.setdefault(key, {"id": str(100 + len(self.records))})
        record.update(properties)
        if created:
            self.creates[key] += 1
        return record["id"], created


@dataclass
class FakeHubSpot(_FakeCRM):
    """A fake HubSpot portal (CRM v3).

    Attributes:
        contacts: contact records: ``{"id", "properties": {...}}``.
        ten_second_limit: requests allowed per rolling 10 s (None: no limit).
        clock: the monotonic seconds the window is measured on.
    """

    contacts: list[dict[str, Any]] = field(default_factory=list)
    ten_second_limit: int | None = None
    clock: Callable[[], float] = time.monotonic
    _window: list[float] = field(default_factory=list)

    def _rate_limited(self) -> Response | None:
        if self.ten_second_limit is None:
            return None
        now = self.clock()
        self._window = [t for t in self._window if now - t < 10.0]
        if len(self._window) >= self.ten_second_limit:
            return JSONResponse(
                {
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": "fake-correlation",
                    "policyName": "TEN_SECONDLY_ROLLING",
                },
                status_code=429,
                headers={
                    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                    "X-HubSpot-RateLimit-Max": str(self.ten_second_limit),
                    "X-HubSpot-RateLimit-Remaining": "0",
                },
            )
        self._window.append(now)
        return None


def _hubspot_error(status: int, message: str, category: str, **extra: Any) -> JSONResponse:
    body = {
        "status": "error",
        "message": message,
        "category": category,
        "correlationId": "fake-correlation",
        **extra,
    }
    return JSONResponse(body, status_code=status)


def build_hubspot_app(fake: FakeHubSpot) -> Starlette:
    """The fake HubSpot API as an ASGI app."""

    async def guard(request: Request) -> Response | None:
        fake.requests.append((request.method, request.url.path))
        if not fake._authorized(request):
            return _hubspot_error(
                401, "The OAuth token used to make this call expired.", "EXPIRED_AUTHENTICATION"
            )
        return fake._rate_limited()

    async def token(request: Request) -> Response:
        fake.requests.append((request.method, request.url.path))
        issued = fake._refresh({k: str(v) for k, v in (await request.form()).items()})
        if issued is None:
            return JSONResponse({"status": "BAD_REFRESH_TOKEN", "message": "invalid"}, 400)
        return JSONResponse(
            {
                "access_token": issued,
                "refresh_token": fake.refresh_token,
                "expires_in": 1800,
                "token_type": "bearer",
            }
        )

    async def search(request: Request) -> Response:
        if (refusal := await guard(request)) is not None:
            return refusal
        body = await request.json()
        (flt,) = body["filterGroups"][0]["filters"]
        wanted = body.get("properties") or []
        results = [
            {
                "id": c["id"],
                "properties": {k: c["properties"].get(k) for k in wanted},
                "archived": False,
            }
            for c in fake.contacts
            if flt["operator"] == "EQ" and c["properties"].get(flt["propertyName"]) == flt["value"]
        ]
        return JSONResponse({"total": len(results), "results": results[: body.get("limit", 10)]})

    async def upsert(request: Request) -> Response:
        if (refusal := await guard(request)) is not None:
            return refusal
        if fake.fail_next:
            status = fake.fail_next.pop(0)
            if status == 429:
                response = _hubspot_error(
                    429,
                    "You have reached your secondly limit.",
                    "RATE_LIMITS",
                    errorType="RATE_LIMIT",
                    policyName="SECONDLY",
                )
                response.headers["Retry-After"] = str(fake.retry_after_s)
                return response
            return _hubspot_error(status, "internal error", "INTERNAL_ERROR")
        object_type = request.path_params["object_type"]
        results = []
        for item in (await request.json())["inputs"]:
            properties = dict(item["properties"])
            if properties.get(item["idProperty"]) not in (None, item["id"]):
                return _hubspot_error(400, "idProperty value mismatch", "VALIDATION_ERROR")
            record_id, created = fake._apply(f"{object_type}/{item['id']}", properties)
            results.append(
                {"id": record_id, "new": created, "properties": properties, "archived": False}
            )
        await _delay(fake)
        return JSONResponse({"status": "COMPLETE", "results": results})

    return Starlette(
        routes=[
            Route("/oauth/v1/token", token, methods=["POST"]),
            Route("/crm/v3/objects/contacts/search", search, methods=["POST"]),
            Route("/crm/v3/objects/{object_type}/batch/upsert", upsert, methods=["POST"]),
        ]
    )


@dataclass
class FakeSalesforce(_FakeCRM):
    """A fake Salesforce org (REST API v60.0).

    Attributes:
        contacts: Contact records by field name (``Id``, ``Phone``, …).
        request_limit: API requests allowed before ``REQUEST_LIMIT_EXCEEDED``
            (None: no limit); ``reset_request_limit()`` starts a new period.
    """

    contacts: list[dict[str, Any]] = field(default_factory=list)
    request_limit: int | None = None
    api_requests: int = 0

    def reset_request_limit(self) -> None:
        """A new 24-hour period: the request count starts again."""
        self.api_requests = 0


def _sf_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code, "fields": []}], status)


_SOQL = re.compile(r"^SELECT (?P<fields>[\w, ]+) FROM Contact WHERE Phone = '(?P<phone>[^']*)'")


def build_salesforce_app(fake: FakeSalesforce) -> Starlette:
    """The fake Salesforce REST API (and its token endpoint) as an ASGI app."""

    def guard(request: Request) -> Response | None:
        fake.requests.append((request.method, request.url.path))
        if not fake._authorized(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        fake.api_requests += 1
        if fake.request_limit is not None and fake.api_requests > fake.request_limit:
            return _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        return None

    async def token(request: Request) -> Response:
        fake.requests.append((request.method, request.url.path))
        issued = fake._refresh({k: str(v) for k, v in (await request.form()).items()})
        if issued is None:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400
            )
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(
            {
                "access_token": issued,
                "instance_url": base,
                "token_type": "Bearer",
                "issued_at": "0",
                "signature": "fake",
            }
        )

    async def query(request: Request) -> Response:
        if (refusal := guard(request)) is not None:
            return refusal
        match = _SOQL.match(request.query_params.get("q", ""))
        if match is None:
            return _sf_error(400, "MALFORMED_QUERY", "unsupported query in the fake")
        names = [f.strip() for f in match["fields"].split(",")]
        records = [
            {
                "attributes": {"type": "Contact", "url": f"/Contact/{c['Id']}"},
                **{n: c.get(n) for n in names},
            }
            for c in fake.contacts
            if c.get("Phone") == match["phone"]
        ]
        return JSONResponse({"totalSize": len(records), "done": True, "records": records[:1]})

    async def upsert(request: Request) -> Response:
        if (refusal := guard(request)) is not None:
            return refusal
        if fake.fail_next:
            status = fake.fail_next.pop(0)
            if status == 429:
                response = _sf_error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests")
                response.headers["Retry-After"] = str(fake.retry_after_s)
                return response
            return _sf_error(status, "SERVER_UNAVAILABLE", "Server unavailable")
        p = request.path_params
        key = f"{p['sobject']}/{p['field']}/{unquote(p['value'])}"
        record_id, created = fake._apply(key, await request.json())
        await _delay(fake)
        body = {"id": record_id, "success": True, "errors": [], "created": created}
        return JSONResponse(body, status_code=201 if created else 200)

    return Starlette(
        routes=[
            Route("/services/oauth2/token", token, methods=["POST"]),
            Route("/services/data/{version}/query", query, methods=["GET"]),
            Route(
                "/services/data/{version}/sobjects/{sobject}/{field}/{value:path}",
                upsert,
                methods=["PATCH"],
            ),
        ]
    )


@dataclass
class FakeWebhookReceiver(_FakeCRM):
    """A business's webhook receiver that verifies voicerail's signature.

    Attributes:
        secret: the shared secret.
        customers: phone → ``{"id", "fields"}``.
        now_s: the receiver's wall clock.
        refused: why each refused request was refused.
    """

    secret: bytes = b"webhook-secret"
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    now_s: Callable[[], float] = time.time
    refused: list[str] = field(default_factory=list)


def build_webhook_app(fake: FakeWebhookReceiver) -> Starlette:
    """The fake receiver as an ASGI app (one route, ``POST /hook``)."""

    async def hook(request: Request) -> Response:
        fake.requests.append((request.method, request.url.path))
        body = await request.body()
        reason = verify_signature(
            fake.secret,
            request.headers.get(TIMESTAMP_HEADER),
            body,
            request.headers.get(SIGNATURE_HEADER),
            fake.now_s(),
        )
        if reason is not None:
            fake.refused.append(reason)
            return JSONResponse({"error": reason}, status_code=401)
        payload = json.loads(body)
        if payload["type"] == "lookup":
            return JSONResponse({"customer": fake.customers.get(payload["phone"])})
        if fake.fail_next:
            status = fake.fail_next.pop(0)
            headers = {"Retry-After": str(fake.retry_after_s)} if status == 429 else {}
            return JSONResponse({"error": "failing on purpose"}, status, headers=headers)
        if request.headers.get("idempotency-key") != payload["idempotency_key"]:
            return JSONResponse({"error": "idempotency key header mismatch"}, status_code=400)
        record_id, created = fake._apply(
            payload.get("entity") or payload["idempotency_key"], payload["properties"]
        )
        await _delay(fake)
        return JSONResponse({"id": record_id, "created": created})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def _delay(fake: _FakeCRM) -> None:
    # The write is applied; the answer is late (a timeout after the commit).
    if fake.commit_then_delay_s > 0:
        delay_s, fake.commit_then_delay_s = fake.commit_then_delay_s, 0.0
        await asyncio.sleep(delay_s)


@contextlib.asynccontextmanager
async def run_fake_crm(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields ``http://127.0.0.1:<port>``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, http="h11", ws="none"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                await task
            await asyncio.sleep(0.001)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop.set()
        await task
        listener.close()
