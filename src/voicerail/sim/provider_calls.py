"""Start a simulated call as each provider would: its webhook first, then its stream.

:func:`answer_call` asks the server's webhook for the provider (the request the
provider makes when a call comes in), reads the stream URL and parameters out of
the answer (TwiML, TeXML, Plivo XML or a Vonage NCCO), and returns a
:class:`~voicerail.sim.caller.SimulatedTwilioCall` whose wire speaks that
provider's stream protocol to that URL. ``voicerail call --transport X --server
URL`` uses it.

Telnyx webhooks are signed with Ed25519 when a private key is given, as Telnyx
signs them (``wire/telnyx_webhook.py``).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from voicerail.errors import ProtocolError
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.sim.caller_wire import (
    CallerWire,
    PlivoCallerWire,
    TelnyxCallerWire,
    TwilioCallerWire,
    VonageCallerWire,
)
from voicerail.wire import telnyx_webhook

TRANSPORTS = ("twilio", "telnyx", "plivo", "vonage")
_WEBHOOK_TIMEOUT_S = 10.0


def _ws_url(server: str, announced: str) -> str:
    """The announced stream URL's path on the server we were given (the server
    announces ``wss://`` and its public host; a local test talks ``ws://``)."""
    path = urllib.parse.urlsplit(announced.strip()).path
    base = server.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
    return base + path


def _stream_element(xml_text: str, provider: str) -> ET.Element:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ProtocolError(f"{provider} webhook answered invalid xml: {exc}") from None
    stream = root.find(".//Stream")
    if stream is None:
        raise ProtocolError(f"{provider} webhook answered no <Stream>: {xml_text[:200]}")
    return stream


def _parameters(stream: ET.Element) -> dict[str, str]:
    return {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }


async def answer_call(
    transport: str,
    server: str,
    *,
    caller: str = "+15550100",
    callee: str = "+15550199",
    telnyx_signing_key: Ed25519PrivateKey | None = None,
    sim_parameters: dict[str, str] | None = None,
    **caller_kwargs: Any,
) -> SimulatedTwilioCall:
    """Ask ``transport``'s webhook on ``server`` and build the call it answers.

    Args:
        transport: ``twilio``, ``telnyx``, ``plivo`` or ``vonage``.
        server: the server's base URL, ``http://HOST:PORT``.
        caller: the calling number sent to the webhook.
        callee: the called number.
        telnyx_signing_key: signs the Telnyx webhook when given.
        sim_parameters: the simulator's per-call parameters (``sim_token``,
            ``sim_script``), added to the stream's start as the provider's custom
            parameters (``voicerail.sim.fake_server`` reads them).
        caller_kwargs: passed to :class:`SimulatedTwilioCall`.

    Raises:
        ValueError: an unknown transport.
        httpx.HTTPError: the webhook could not be reached or answered an error.
        ProtocolError: the answer holds no stream.
    """
    sim = dict(sim_parameters or {})
    call_sid = f"CA{uuid.uuid4().hex}"
    stream_sid = f"MZ{uuid.uuid4().hex}"
    base = server.rstrip("/")
    form = {"CallSid": call_sid, "From": caller, "To": callee, "AccountSid": "AC" + "0" * 32}
    wire: CallerWire
    async with httpx.AsyncClient(timeout=_WEBHOOK_TIMEOUT_S) as http:
        if transport == "twilio":
            response = await http.post(f"{base}/twilio/voice", data=form)
            response.raise_for_status()
            stream = _stream_element(response.text, transport)
            url = stream.get("url", "")
            wire = TwilioCallerWire(call_sid, stream_sid, _parameters(stream) | sim)
        elif transport == "telnyx":
            call_sid = f"v3:{uuid.uuid4().hex}"
            form["CallSid"] = call_sid
            body = urllib.parse.urlencode(form).encode("ascii")
            headers = {"content-type": "application/x-www-form-urlencoded"}
            if telnyx_signing_key is not None:
                timestamp = str(int(time.time()))
                signature = telnyx_signing_key.sign(timestamp.encode("ascii") + b"|" + body)
                headers[telnyx_webhook.SIGNATURE_HEADER] = base64.b64encode(signature).decode()
                headers[telnyx_webhook.TIMESTAMP_HEADER] = timestamp
            response = await http.post(f"{base}/telnyx/voice", content=body, headers=headers)
            response.raise_for_status()
            stream = _stream_element(response.text, transport)
            url = stream.get("url", "")
            wire = TelnyxCallerWire(call_sid, str(uuid.uuid4()), _parameters(stream) | sim)
        elif transport == "plivo":
            call_sid = str(uuid.uuid4())
            plivo_form = {"CallUUID": call_sid, "From": caller.lstrip("+"), "To": callee}
            response = await http.post(f"{base}/plivo/answer", data=plivo_form)
            response.raise_for_status()
            stream = _stream_element(response.text, transport)
            url = stream.text or ""
            extra = stream.get("extraHeaders", "")
            wire = PlivoCallerWire(call_sid, str(uuid.uuid4()), extra.replace(",", ";"), sim)
        elif transport == "vonage":
            call_sid = str(uuid.uuid4())
            query = {
                "uuid": call_sid,
                "conversation_uuid": f"CON-{uuid.uuid4()}",
                "from": caller.lstrip("+"),
                "to": callee.lstrip("+"),
            }
            response = await http.get(f"{base}/vonage/answer", params=query)
            response.raise_for_status()
            url, wire = _vonage_wire(response.text)
            wire.headers.update(sim)
        else:
            raise ValueError(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")
    if not url:
        raise ProtocolError(f"{transport} webhook answered a stream without a url")
    call = SimulatedTwilioCall(_ws_url(base, url), call_sid=call_sid, wire=wire, **caller_kwargs)
    call.result.stream_sid = stream_sid
    return call


def _vonage_wire(text: str) -> tuple[str, VonageCallerWire]:
    try:
        ncco = json.loads(text)
        endpoint = next(
            e
            for action in ncco
            if action.get("action") == "connect"
            for e in action.get("endpoint", [])
            if e.get("type") == "websocket"
        )
    except (ValueError, TypeError, AttributeError, StopIteration):
        raise ProtocolError(f"vonage answer holds no websocket connect: {text[:200]}") from None
    rate_hz = 16000 if "16000" in str(endpoint.get("content-type", "")) else 8000
    headers = {str(k): str(v) for k, v in (endpoint.get("headers") or {}).items()}
    return str(endpoint.get("uri", "")), VonageCallerWire(headers, rate_hz)
