"""Telnyx, Plivo and Vonage at the ASGI app: webhook answers, Telnyx signatures, and
one call per transport whose bad frame closes only that call (1008)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.session.runtime import Runtime
from voicerail.sim.caller_wire import PlivoCallerWire, TelnyxCallerWire, VonageCallerWire
from voicerail.testing.asgi import AsgiWebSocket
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

SILENCE = b"\xff" * 160
PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_B64 = base64.b64encode(
    PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()


@pytest.fixture
def store(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield events
    events.close()


def make_app(store, clock: Any = None, **settings: Any) -> Any:
    runtime = Runtime(
        agent=QuietAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=store,
        clock=clock or FakeClock(wall_offset_s=time.time()),
    )
    return create_app(runtime, ServerSettings(**settings))


def test_telnyx_webhook_answers_a_bidirectional_pcmu_stream(store):
    form = {"CallSid": "v3:abc", "From": "+15550100", "To": "+15550199"}
    response = TestClient(make_app(store)).post("/telnyx/voice", data=form)
    assert response.status_code == 200
    assert '<Stream url="wss://testserver/telnyx/media"' in response.text
    assert 'bidirectionalMode="rtp" bidirectionalCodec="PCMU"' in response.text
    assert '<Parameter name="from" value="+15550100"/>' in response.text


def signed(body: bytes, timestamp: str) -> dict[str, str]:
    signature = PRIVATE.sign(timestamp.encode() + b"|" + body)
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": timestamp,
        "content-type": "application/x-www-form-urlencoded",
    }


def test_telnyx_webhook_signature_is_verified_when_a_key_is_configured(store):
    client = TestClient(make_app(store, telnyx_public_key=PUBLIC_B64))
    body = b"CallSid=v3%3Aabc&From=%2B15550100"
    now = str(int(time.time()))
    assert client.post("/telnyx/voice", content=body).status_code == 403
    good = client.post("/telnyx/voice", content=body, headers=signed(body, now))
    assert good.status_code == 200 and "/telnyx/media" in good.text
    tampered = client.post("/telnyx/voice", content=body + b"1", headers=signed(body, now))
    assert tampered.status_code == 403 and "does not match" in tampered.text
    old = str(int(time.time()) - 3600)
    stale = client.post("/telnyx/voice", content=body, headers=signed(body, old))
    assert stale.status_code == 403 and "off the clock" in stale.text


def test_plivo_answer_streams_mulaw_both_ways_and_keeps_the_call_alive(store):
    form = {"CallUUID": "c-1", "From": "+1 555-0100", "To": "15550199"}
    response = TestClient(make_app(store)).post("/plivo/answer", data=form)
    assert '<Stream bidirectional="true" keepCallAlive="true"' in response.text
    assert 'contentType="audio/x-mulaw;rate=8000" extraHeaders="from=15550100"' in response.text
    assert "wss://testserver/plivo/media</Stream>" in response.text


def test_vonage_answer_is_an_ncco_connect_to_a_websocket_with_headers(store):
    client = TestClient(make_app(store))
    query = {"uuid": "u-1", "from": "15550100", "to": "15550199"}
    [connect] = client.get("/vonage/answer", params=query).json()
    [endpoint] = connect["endpoint"]
    assert connect["action"] == "connect" and endpoint["type"] == "websocket"
    assert endpoint["uri"] == "wss://testserver/vonage/media"
    assert endpoint["content-type"] == "audio/l16;rate=8000"
    assert endpoint["headers"] == {"call_uuid": "u-1", "from": "15550100"}
    assert client.post("/vonage/event", json={"status": "ringing"}).status_code == 204


WIRES = {
    "telnyx": lambda sid: TelnyxCallerWire(sid, f"stream-{sid}", {"from": "+15550100"}),
    "plivo": lambda sid: PlivoCallerWire(sid, f"stream-{sid}", "from=15550100"),
    "vonage": lambda sid: VonageCallerWire({"call_uuid": sid, "from": "15550100"}),
}
BAD_FRAME = {
    "telnyx": (json.dumps({"event": "media", "media": {"payload": "%%"}}), "not valid base64"),
    "plivo": (json.dumps({"event": "stop"}), "unknown event 'stop'"),
    "vonage": (b"\x00\x00\x00", "audio frame of 3 bytes"),
}


@pytest.mark.parametrize("transport", ["telnyx", "plivo", "vonage"])
async def test_a_bad_frame_closes_only_that_call(store, transport):
    """Two calls on one transport: the one that sends a bad frame is closed with 1008
    and fails; the other gets its greeting and ends when its caller hangs up."""
    app = make_app(store)
    calm_wire, bad_wire = WIRES[transport]("calm"), WIRES[transport]("bad")
    calm, bad = AsgiWebSocket(app, f"/{transport}/media"), AsgiWebSocket(app, f"/{transport}/media")
    for socket, wire in ((calm, calm_wire), (bad, bad_wire)):
        assert (await socket.receive())["type"] == "websocket.accept"
        for frame in wire.opening():
            socket.send(frame)
        socket.send(wire.media(SILENCE, 1))
    frame, reason = BAD_FRAME[transport]
    bad.send(frame)
    close = await bad.until("websocket.close")
    assert close["code"] == 1008 and reason in close["reason"]
    await bad.finished()
    calm.send(calm_wire.media(SILENCE, 2))
    await calm.until("websocket.send")  # the greeting's audio or mark
    await calm.hang_up()
    outcomes = {c.call_sid: c.outcome for c in store.calls()}
    assert outcomes == {"calm": "abandoned", "bad": "failed"}
    calm_record = next(c for c in store.calls() if c.call_sid == "calm")
    assert calm_record.data["transport"] == transport
