"""A fake Twilio REST API (calls) that answers as Twilio does and posts status callbacks.

Speaks what :mod:`voicerail.handoff.twilio_transfer` documents: ``POST …/Calls.json``
creates a call (201, ``status: queued``) and then posts form-encoded status
callbacks (``initiated``, ``ringing``, then the scripted end) to its
``StatusCallback``; ``POST …/Calls/{Sid}.json`` updates a live call's TwiML or
ends it (``Status=canceled|completed``, followed by that status's callback).
Callbacks carry ``X-Twilio-Signature`` computed as Twilio documents (HMAC-SHA1
under the auth token of the URL followed by the sorted form pairs, base64;
https://www.twilio.com/docs/usage/webhooks/webhooks-security, read 2026-12),
so a server that validates signatures accepts them. Errors use Twilio's
envelope ``{"code", "message", "more_info", "status"}``:
401/20003 for bad credentials, 404/20404 for an unknown call, 400/21220 for
redirecting a call that is no longer in progress, 400/21201 without ``To``.

The human's phone is scripted by ``human``: ``answer``, ``busy``, ``decline``
(busy with SIP 603), ``no_answer``, ``voicemail`` (answered by a machine) or
``ring`` (rings until cancelled). Every ``<Say>`` a call's TwiML holds is kept
in ``said``, so a test can check what the human heard.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import unescape

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

_SAY = re.compile(r"<Say>(.*?)</Say>", re.S)
_FINISHED = {"completed", "canceled", "busy", "no-answer", "failed"}


@dataclass
class FakeCall:
    """One call as the fake holds it.

    Attributes:
        sid: ``CA…``.
        to: the number dialled (None for a live inbound call added by the test).
        status: Twilio's ``CallStatus``.
        twiml: every TwiML the call was given, in order.
        said: every ``<Say>`` text of that TwiML, unescaped.
        status_callback: where its status callbacks go.
        form: the create request's form (repeated keys as lists).
    """

    sid: str
    to: str | None
    status: str
    twiml: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    status_callback: str | None = None
    form: dict[str, Any] = field(default_factory=dict)

    def give(self, twiml: str) -> None:
        self.twiml.append(twiml)
        self.said += [unescape(s) for s in _SAY.findall(twiml)]


@dataclass
class FakeTwilioREST:
    """Behaviour and records (see the module docstring)."""

    account_sid: str = "AC" + "1" * 32
    auth_token: str = "fake-auth-token"
    human: str = "answer"
    calls: dict[str, FakeCall] = field(default_factory=dict)
    callbacks: list[dict[str, str]] = field(default_factory=list)
    callback_failures: int = 0
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def add_live_call(self, sid: str) -> FakeCall:
        """An inbound call in progress (the caller's), for the test to transfer."""
        call = FakeCall(sid=sid, to=None, status="in-progress")
        self.calls[sid] = call
        return call

    async def drain(self) -> None:
        """Wait until every scripted callback has been posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def _post_status(self, call: FakeCall, status: str, **extra: str) -> None:
        call.status = status
        if not call.status_callback:
            return
        form = {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "CallStatus": status,
            "To": call.to or "",
            **extra,
        }
        self.callbacks.append(form)
        signature = RequestValidator(self.auth_token).compute_signature(call.status_callback, form)
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                await client.post(
                    call.status_callback, data=form, headers={"X-Twilio-Signature": signature}
                )
        except httpx.HTTPError:
            # Twilio logs error 11200 (HTTP retrieval failure) and moves on.
            self.callback_failures += 1

    async def _script(self, call: FakeCall) -> None:
        await self._post_status(call, "initiated")
        await self._post_status(call, "ringing")
        end: dict[str, tuple[str, dict[str, str]]] = {
            "answer": ("in-progress", {"AnsweredBy": "human"}),
            "voicemail": ("in-progress", {"AnsweredBy": "machine_end_beep"}),
            "busy": ("busy", {"SipResponseCode": "486"}),
            "decline": ("busy", {"SipResponseCode": "603"}),
            "no_answer": ("no-answer", {}),
        }
        if self.human in end:
            status, extra = end[self.human]
            await self._post_status(call, status, **extra)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        },
        status_code=status,
    )


def _resource(fake: FakeTwilioREST, call: FakeCall) -> dict[str, Any]:
    return {
        "sid": call.sid,
        "account_sid": fake.account_sid,
        "status": call.status,
        "to": call.to,
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{fake.account_sid}/Calls/{call.sid}.json",
    }


def build_twilio_rest_app(fake: FakeTwilioREST) -> Starlette:
    """The fake API as an ASGI app."""

    def authorized(request: Request) -> bool:
        expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
        return (
            request.headers.get("authorization") == f"Basic {expected}"
            and request.path_params["account"] == fake.account_sid
        )

    async def create(request: Request) -> Response:
        if not authorized(request):
            return _error(401, 20003, "Authenticate")
        raw = await request.form()
        form: dict[str, Any] = {
            k: raw.getlist(k) if len(raw.getlist(k)) > 1 else raw[k] for k in raw
        }
        if not form.get("To"):
            return _error(400, 21201, "No 'To' number is specified")
        call = FakeCall(
            sid=f"CA{next(fake._sids):032x}",
            to=str(form["To"]),
            status="queued",
            status_callback=str(form.get("StatusCallback") or "") or None,
            form=form,
        )
        call.give(str(form.get("Twiml", "")))
        fake.calls[call.sid] = call
        fake._spawn(fake._script(call))
        return JSONResponse(_resource(fake, call), status_code=201)

    async def update(request: Request) -> Response:
        if not authorized(request):
            return _error(401, 20003, "Authenticate")
        call = fake.calls.get(request.path_params["sid"])
        if call is None:
            return _error(404, 20404, "The requested resource was not found")
        form = await request.form()
        if call.status in _FINISHED:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if "Twiml" in form:
            call.give(str(form["Twiml"]))
        elif form.get("Status") in ("canceled", "completed"):
            call.status = str(form["Status"])
            fake._spawn(fake._post_status(call, call.status))
        return JSONResponse(_resource(fake, call))

    prefix = "/2010-04-01/Accounts/{account}/Calls"
    return Starlette(
        routes=[
            Route(prefix + ".json", create, methods=["POST"]),
            Route(prefix + "/{sid}.json", update, methods=["POST"]),
        ]
    )
