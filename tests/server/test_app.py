"""The ASGI app's HTTP routes: TwiML, signature validation, REST API."""

from __future__ import annotations

import os

import pytest
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

TOKEN = "test-auth-token"


@pytest.fixture
def store(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield events
    events.close()


def client_for(store, **settings) -> TestClient:
    runtime = Runtime(agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=store)
    return TestClient(create_app(runtime, ServerSettings(**settings)))


FORM = {"CallSid": "CA123", "From": "+15550001111", "To": "+15550002222"}


def test_voice_webhook_answers_connect_stream_twiml(store):
    response = client_for(store).post("/twilio/voice", data=FORM)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    body = response.text
    assert '<Stream url="wss://testserver/twilio/media">' in body
    assert '<Parameter name="callsid" value="CA123"' in body
    assert '<Connect action="/twilio/connect-action">' in body


def test_signature_is_required_when_a_token_is_configured(store):
    client = client_for(store, twilio_auth_token=TOKEN, public_url="https://voice.example.com")
    assert client.post("/twilio/voice", data=FORM).status_code == 403
    bad = {"X-Twilio-Signature": "AAAA"}
    assert client.post("/twilio/voice", data=FORM, headers=bad).status_code == 403
    url = "https://voice.example.com/twilio/voice"
    good = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, FORM)}
    response = client.post("/twilio/voice", data=FORM, headers=good)
    assert response.status_code == 200
    assert "wss://voice.example.com/twilio/media" in response.text


def test_connect_action_dials_the_handoff_number_only_after_a_handoff(store):
    store.save_call(
        CallRecord("vr_1", "quiet", 1.0, 2.0, "handoff", call_sid="CA123", data={"handoff": True})
    )
    client = client_for(store, handoff_number="+15559998888")
    assert "<Dial>+15559998888</Dial>" in client.post("/twilio/connect-action", data=FORM).text
    other = dict(FORM, CallSid="CA999")
    assert "<Hangup />" in client.post("/twilio/connect-action", data=other).text


def test_rest_api_lists_and_shows_calls(store):
    store.save_call(CallRecord("vr_1", "quiet", 1.0, 2.0, "completed", call_sid="CA1"))
    store.append(Event("vr_1", EventKind.CALL_STARTED, 1.0, 0.0))
    client = client_for(store)
    calls = client.get("/api/calls").json()["calls"]
    assert [c["call_id"] for c in calls] == ["vr_1"]
    assert client.get("/api/calls", params={"call_sid": "nope"}).json()["calls"] == []
    detail = client.get("/api/calls/vr_1").json()
    assert detail["events"][0]["kind"] == "CallStarted"
    assert client.get("/api/calls/missing").status_code == 404
    assert client.get("/api/calls", params={"limit": "x"}).status_code == 400
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "calls_in_progress": 0, "worker_pid": os.getpid()}


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "9223372036854775808"])
def test_calls_api_refuses_an_unbounded_limit_with_400(store, limit):
    """Issue 11: limit=-1 returned every row and 2**63 was a 500."""
    store.save_call(CallRecord("vr_1", "quiet", 1.0, 2.0, "completed", call_sid="CA1"))
    response = client_for(store).get("/api/calls", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"] == "limit: must be an integer from 1 to 1000"


def test_calls_api_finds_a_call_by_sid_beyond_the_limit(store):
    """Issue 11: call_sid was filtered after limit, so an older call was not found."""
    store.save_call(CallRecord("vr_old", "quiet", 1.0, 2.0, "completed", call_sid="CA_OLD"))
    for k in range(3):
        store.save_call(CallRecord(f"vr_{k}", "quiet", 10.0 + k, 11.0 + k, "completed"))
    response = client_for(store).get("/api/calls", params={"call_sid": "CA_OLD", "limit": "1"})
    assert [c["call_id"] for c in response.json()["calls"]] == ["vr_old"]


def test_media_websocket_runs_a_call_and_records_its_outcome(store):
    """Connected, start, a few frames and stop over the real ASGI WebSocket route."""
    from voicerail.wire import twilio

    client = client_for(store)
    with client.websocket_connect("/twilio/media") as ws:
        ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
        ws.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
        greeting = twilio.parse_outbound(ws.receive_text())
        assert isinstance(greeting, twilio.OutboundMedia)
        ws.send_text(twilio.serialize_inbound(twilio.Stop(3, "MZ1", "AC" + "0" * 32, "CA1")))
    calls = store.calls()
    assert calls[0].call_sid == "CA1"
    assert calls[0].outcome == "abandoned"
    kinds = [e.kind for e in store.events(calls[0].call_id)]
    assert kinds[:2] == [EventKind.CALL_STARTED, EventKind.STREAM_STARTED]
    assert kinds[-1] == EventKind.CALL_ENDED


def test_connect_action_resumes_a_live_call_with_a_fresh_stream_and_hangs_up_an_ended_one(store):
    """state/resume.py rule 2: a call whose dialog goes on gets a new <Stream>."""
    import asyncio

    from voicerail.state.session import MemoryStateStore, SessionState
    from voicerail.testing.clock import FakeClock

    states = MemoryStateStore(monotonic=FakeClock().monotonic)
    live = SessionState("vr_1", version=2, call_sid="CA123", dialog={"node": "book"})
    ended = SessionState("vr_2", version=1, call_sid="CA999", dialog={"node": "x", "ended": True})
    asyncio.run(states.save(SessionState("vr_1", version=1, call_sid="CA123")))
    asyncio.run(states.save(live))
    asyncio.run(states.save(ended))
    runtime = Runtime(
        agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=store, state=states
    )
    client = TestClient(create_app(runtime, ServerSettings(public_url="https://v.example.com")))
    body = client.post("/twilio/connect-action", data=FORM).text
    assert '<Connect action="/twilio/connect-action">' in body
    assert '<Stream url="wss://v.example.com/twilio/media">' in body
    assert '<Parameter name="callsid" value="CA123" />' in body
    assert '<Parameter name="resume" value="2" />' in body
    other = dict(FORM, CallSid="CA999")
    assert "<Hangup />" in client.post("/twilio/connect-action", data=other).text


def test_a_draining_server_alone_hangs_up_instead_of_resuming_but_one_of_several_resumes(store):
    import asyncio

    from voicerail.state.session import MemoryStateStore, SessionState
    from voicerail.testing.clock import FakeClock

    states = MemoryStateStore(monotonic=FakeClock().monotonic)
    asyncio.run(states.save(SessionState("vr_1", 1, call_sid="CA123", dialog={"node": "book"})))
    runtime = Runtime(
        agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=store, state=states
    )
    runtime.load.draining = True
    alone = TestClient(create_app(runtime, ServerSettings()))
    assert "<Hangup />" in alone.post("/twilio/connect-action", data=FORM).text
    shared = TestClient(create_app(runtime, ServerSettings(other_workers=True)))
    assert "<Stream" in shared.post("/twilio/connect-action", data=FORM).text
