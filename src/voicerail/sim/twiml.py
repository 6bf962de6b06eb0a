"""Twilio's side of the webhooks, for the simulated caller: the requests Twilio
makes and what it does with the TwiML it gets back.

Sources (2026-11): https://www.twilio.com/docs/voice/twiml/connect (``action``:
requested when the ``<Connect>`` ends, that is when the stream ends without the
call ending; relative URLs resolve against the document's URL),
https://www.twilio.com/docs/voice/twiml/stream (``<Stream url>``, ``<Parameter>``
delivered in ``start.customParameters``),
https://www.twilio.com/docs/usage/webhooks/voice-webhooks (the request's form
fields) and https://www.twilio.com/docs/usage/webhooks/webhooks-security
(``X-Twilio-Signature``).

Rules:

1. A webhook is a form ``POST`` with Twilio's fields; when an auth token is given
   it is signed as Twilio signs it (the twilio SDK's ``RequestValidator``).
2. TwiML is read verb by verb: a ``<Connect><Stream>`` opens a stream (its
   ``action`` remembered, resolved against the URL that returned it); the first
   verb that ends or leaves the call (``Hangup``, ``Reject``, ``Dial``, ``Say``
   then nothing) ends what the simulator follows.
3. Twilio only speaks ``wss``; a plain-HTTP test server gets ``ws`` at the same
   host and path (the simulator's one liberty).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

ACCOUNT_SID = "AC" + "0" * 32


@dataclass(frozen=True)
class StreamDirective:
    """A ``<Connect><Stream>``: where to stream, with what, and where to go after.

    Attributes:
        url: the WebSocket URL (rule 3 applied).
        parameters: the ``<Parameter>`` names and values.
        action: the absolute ``<Connect action>`` URL, None without one.
    """

    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    action: str | None = None


@dataclass(frozen=True)
class CallAnswer:
    """What the TwiML made of the call: a stream, or the verbs that ended it."""

    stream: StreamDirective | None
    verbs: tuple[str, ...]

    @property
    def summary(self) -> str:
        """``"Say + Hangup"``: the verbs, for a refusal or an end."""
        return " + ".join(self.verbs)


def parse_twiml(text: str, document_url: str) -> CallAnswer:
    """Rule 2 on one TwiML document fetched from ``document_url``.

    Raises:
        ValueError: not XML, or not a ``<Response>``.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"twiml is not xml: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"twiml root is {root.tag!r}, expected 'Response'")
    verbs = tuple(child.tag for child in root)
    for child in root:
        if child.tag != "Connect":
            continue
        stream = child.find("Stream")
        if stream is None or not stream.get("url"):
            continue
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        action = child.get("action")
        directive = StreamDirective(
            url=websocket_url(str(stream.get("url")), document_url),
            parameters=params,
            action=urljoin(document_url, action) if action else None,
        )
        return CallAnswer(directive, verbs)
    return CallAnswer(None, verbs)


def websocket_url(url: str, document_url: str) -> str:
    """Rule 3: ``wss://h/p`` → ``ws://h/p`` when the document came over plain HTTP."""
    if urlsplit(document_url).scheme == "http" and url.startswith("wss://"):
        return "ws://" + url[len("wss://") :]
    return url


def call_form(call_sid: str, *, status: str, caller: str, called: str) -> dict[str, str]:
    """Rule 1: the fields of a voice webhook (``status``: ``ringing`` for the first
    request, ``in-progress`` for the ``<Connect action>``)."""
    return {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": caller,
        "To": called,
        "CallStatus": status,
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


async def request_twiml(
    url: str, form: dict[str, str], *, auth_token: str | None = None, timeout_s: float = 10.0
) -> CallAnswer:
    """Rule 1 then 2: ``POST`` the webhook and read its TwiML.

    Raises:
        httpx.HTTPError: unreachable, or not answered 200.
        ValueError: the answer is not TwiML.
    """
    headers = {}
    if auth_token is not None:
        from twilio.request_validator import RequestValidator

        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(url, form)
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(url, data=form, headers=headers)
        response.raise_for_status()
    return parse_twiml(response.text, url)
