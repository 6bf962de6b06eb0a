"""Admission at the server: busy TwiML at the webhook, 1013 on the stream, /readyz."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import voicerail.wire.twilio as twilio
from voicerail.errors import ConfigError
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.server.admission import OverflowPolicy, load_overflow
from voicerail.server.app import ServerSettings, create_app
from voicerail.session.load import AdmissionConfig, LoadMonitor
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

from .test_app import FORM


@pytest.fixture
def store(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield events
    events.close()


def client_for(store, max_calls: int, overflow: OverflowPolicy | None = None) -> TestClient:
    runtime = Runtime(
        agent=QuietAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=store,
        load=LoadMonitor(AdmissionConfig(max_calls=max_calls)),
    )
    settings = ServerSettings(overflow=overflow or OverflowPolicy())
    return TestClient(create_app(runtime, settings))


def verbs(xml: str) -> list[str]:
    return [child.tag for child in ET.fromstring(xml)]


def test_beyond_capacity_the_webhook_answers_busy_twiml_and_readyz_is_503(store):
    with client_for(store, max_calls=1) as client:
        assert client.get("/readyz").status_code == 200
        first = client.post("/twilio/voice", data=FORM)
        assert verbs(first.text) == ["Connect"]
        assert client.get("/readyz").status_code == 503  # the slot is promised to CA123
        second = client.post("/twilio/voice", data={**FORM, "CallSid": "CA456"})
        assert verbs(second.text) == ["Say", "Hangup"]
        assert "all our lines are busy" in second.text
        body = client.get("/readyz").json()
        assert body["ready"] is False and body["reserved"] == 1 and body["max_calls"] == 1
    refused = [e for c in store.calls(limit=10) for e in store.events(c.call_id)]
    assert refused == []  # a refusal is not a call row
    events = store.events("refused_CA456")
    assert [e.kind for e in events] == [EventKind.CALL_REFUSED]
    assert events[0].data["where"] == "webhook"
    assert events[0].data["reason"] == "full: 1 of 1 calls"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (OverflowPolicy(action="reject"), ["Reject"]),
        (OverflowPolicy(action="dial", number="+15550009999"), ["Dial"]),
    ],
)
def test_the_overflow_policy_decides_what_a_refused_caller_gets(store, policy, expected):
    with client_for(store, max_calls=1, overflow=policy) as client:
        client.post("/twilio/voice", data=FORM)
        refused = client.post("/twilio/voice", data={**FORM, "CallSid": "CA456"})
    assert verbs(refused.text) == expected
    if policy.action == "reject":
        assert 'reason="busy"' in refused.text
    else:
        assert "+15550009999" in refused.text


def test_a_stream_beyond_capacity_is_closed_with_1013_and_recorded(store):
    start = twilio.serialize_inbound
    with client_for(store, max_calls=1) as client, client.websocket_connect("/twilio/media") as one:
        one.send_text(start(twilio.Connected("Call", "1.0.0")))
        one.send_text(start(twilio.build_start("MZ1", "CA1")))
        assert isinstance(twilio.parse_outbound(one.receive_text()), twilio.OutboundMedia)
        with client.websocket_connect("/twilio/media") as two:
            two.send_text(start(twilio.Connected("Call", "1.0.0")))
            two.send_text(start(twilio.build_start("MZ2", "CA2")))
            with pytest.raises(WebSocketDisconnect) as closed:
                two.receive_text()
        assert closed.value.code == 1013
        assert closed.value.reason == "refused: full: 1 of 1 calls"
        one.send_text(start(twilio.Stop(3, "MZ1", "AC" + "0" * 32, "CA1")))
    calls = store.calls(limit=10)
    assert [c.call_sid for c in calls] == ["CA1"]  # the refused stream is not a call
    assert calls[0].outcome == "abandoned"
    refusals = [e for e in _all_events(store) if e.kind == EventKind.CALL_REFUSED]
    assert [e.data["where"] for e in refusals] == ["stream"]


def _all_events(store):
    rows = store._db.execute("SELECT DISTINCT call_id FROM events").fetchall()
    return [e for (call_id,) in rows for e in store.events(call_id)]


def test_a_stream_announced_by_the_webhook_uses_its_reserved_slot(store):
    with client_for(store, max_calls=1) as client:
        assert verbs(client.post("/twilio/voice", data={**FORM, "CallSid": "CA1"}).text) == [
            "Connect"
        ]
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            ws.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
            assert isinstance(twilio.parse_outbound(ws.receive_text()), twilio.OutboundMedia)
            ws.send_text(twilio.serialize_inbound(twilio.Stop(3, "MZ1", "AC" + "0" * 32, "CA1")))
    assert store.calls(limit=10)[0].call_sid == "CA1"


def test_overflow_is_read_from_the_agent_file(tmp_path: Path):
    agent = tmp_path / "agent.yaml"
    agent.write_text("name: x\noverflow:\n  action: dial\n  number: '+15550001234'\n")
    assert load_overflow(agent) == OverflowPolicy(action="dial", number="+15550001234")
    agent.write_text("name: x\n")
    assert load_overflow(agent) == OverflowPolicy()
    agent.write_text("name: x\noverflow:\n  action: dial\n")
    with pytest.raises(ConfigError, match="overflow action dial needs a number"):
        load_overflow(agent)
    agent.write_text("name: x\noverflow:\n  acton: say\n")
    with pytest.raises(ConfigError, match="unknown overflow field 'acton'"):
        load_overflow(agent)
