"""Dashboard pages, the ops JSON API, /metrics and access control, over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest
from starlette.testclient import TestClient

from voicerail.events.store import SQLiteEventStore
from voicerail.ops import reports
from voicerail.ops.credentials import DAY_S, Credential
from voicerail.providers.base import STTCapabilities, Transcript, TTSCapabilities, TTSChunk
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import COOKIE, AccessSettings, exposure_warning
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.call_generator import events_for, plan_calls
from voicerail.testing.clock import FakeClock

NOW = 1_800_000_000.0
PLANS = list(plan_calls(21, 300, start_s=NOW - 14 * DAY_S, end_s=NOW))
KEY = "test-api-key-0123456789"


class NoSTT:
    name, model, capabilities = "none", "none", STTCapabilities()

    async def transcribe(
        self, audio, *, sample_rate_hz, language="en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript("", is_final=True)


class NoTTS:
    name, model, capabilities = "none", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        yield TTSChunk(b"\x00\x00" * 80, 8000, text)


class NoAgent:
    name = "none"

    def new_dialog(self, call_id: str):
        raise AssertionError("no calls in these tests")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    events = SQLiteEventStore(tmp_path_factory.mktemp("dash") / "events.sqlite3")
    for plan in PLANS:
        call, call_events = events_for(plan)
        events.save_call(call)
        for e in call_events:
            events.append(e)
    events.flush()
    yield events
    events.close()


def client_for(store, crm=None, **operations) -> TestClient:
    clock = FakeClock(wall_offset_s=NOW)
    runtime = Runtime(agent=NoAgent(), stt=NoSTT(), tts=NoTTS(), events=store, clock=clock, crm=crm)
    operations.setdefault("credentials", [])
    settings = ServerSettings(operations=OperationsSettings(**operations))
    return TestClient(create_app(runtime, settings))


def rows(html: str, table: str) -> list[str]:
    body = html.split(f'<table class="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])


def test_overview_answers_the_four_questions(store):
    page = client_for(store).get("/dashboard")
    assert page.status_code == 200
    html = page.text
    for section in ("failures", "cost", "last-failed", "halve", "health", "credentials"):
        assert f'id="{section}"' in html
    cost = reports.cost(store, weeks=2, now_s=NOW)["weeks"][0]
    assert f"${cost['cost_per_converted_call_usd']:.4f}" in html
    last = reports.last_failed(store, n=10)
    assert [
        re.search(r"/dashboard/calls/([\w]+)", r).group(1) for r in rows(html, "last-failed")
    ] == [c["call_id"] for c in last]
    halve = reports.halve(store, window_s=7 * DAY_S, now_s=NOW)
    assert f"{halve['failed_calls']} of {halve['calls']} calls failed" in html
    assert len(rows(html, "causes")) == len(halve["causes"])
    assert '<svg class="bars failure-bars"' in html and '<svg class="bars cost-bars"' in html
    window = client_for(store).get("/dashboard", params={"window": "24h"}).text
    failures = reports.failures(store, window_s=DAY_S, now_s=NOW)["now"]
    assert f"of {failures['calls']} calls failed" in window


def test_call_list_filters(store):
    client = client_for(store)
    every = rows(client.get("/dashboard/calls", params={"since": ""}).text, "calls")
    assert len(every) == min(200, len(PLANS))
    failed = client.get("/dashboard/calls", params={"outcome": "failed", "since": "30d"}).text
    outcomes = re.findall(r'data-outcome="(\w*)"', failed)
    expected = [p for p in PLANS if p.outcome == "failed"]
    assert outcomes == ["failed"] * len(expected)
    piper = client.get("/dashboard/calls", params={"provider": "piper", "since": "30d"}).text
    ids = set(re.findall(r'class="call-link" href="/dashboard/calls/(\w+)"', piper))
    assert ids == {p.call_id for p in PLANS if any(a.provider == "piper" for a in p.attempts)}
    recent = client.get("/dashboard/calls", params={"since": "24h"}).text
    assert len(rows(recent, "calls")) == sum(p.started_at >= NOW - DAY_S for p in PLANS)
    one = PLANS[5].call_id
    found = client.get("/dashboard/calls", params={"q": one, "since": ""}).text
    assert re.findall(r'class="call-link" href="/dashboard/calls/(\w+)"', found) == [one]
    in_progress = client.get("/dashboard/calls", params={"outcome": "in_progress", "since": ""})
    assert "in progress" in in_progress.text


def test_call_page_draws_the_waterfall_with_failovers_and_barge_ins(store):
    client = client_for(store)
    recovered = next(p for p in PLANS if p.scenario == "tts_recovered")
    html = client.get(f"/dashboard/calls/{recovered.call_id}").text
    _, events = events_for(recovered)
    timed = [e for e in events if e.latency_s is not None and e.stage is not None]
    assert html.count('class="wf-row"') == len(timed)
    assert html.count("wf-marker wf-failover") == 1
    assert html.count("wf-marker wf-turn") == recovered.turns
    assert "caller: I&#x27;d like to book a visit" in html  # the transcript
    barge = next(p for p in PLANS if p.scenario == "barge_in")
    assert "wf-marker wf-barge-in" in client.get(f"/dashboard/calls/{barge.call_id}").text
    failed = next(p for p in PLANS if p.scenario == "tts_failed")
    page = client.get(f"/dashboard/calls/{failed.call_id}").text
    assert page.count('class="first-failure"') == 1 and 'stroke="#111827"' in page
    assert client.get("/dashboard/calls/nope").status_code == 404


def test_ops_json_api_gives_the_cli_answers(store):
    client = client_for(store)
    got = client.get("/api/ops/failures", params={"window": "1d"}).json()
    assert got == json.loads(json.dumps(reports.failures(store, window_s=DAY_S, now_s=NOW)))
    got = client.get("/api/ops/cost", params={"weeks": "3"}).json()
    assert got == json.loads(json.dumps(reports.cost(store, weeks=3, now_s=NOW)))
    got = client.get("/api/ops/last-failed", params={"n": "4"}).json()["calls"]
    assert [c["call_id"] for c in got] == [c["call_id"] for c in reports.last_failed(store, n=4)]
    assert client.get("/api/ops/halve").json()["failed_calls"] == sum(
        p.outcome == "failed" and p.started_at >= NOW - 7 * DAY_S for p in PLANS
    )
    assert client.get("/api/ops/providers", params={"window": "1d"}).json()["providers"]
    assert client.get("/api/ops/nope").status_code == 404


def test_credentials_and_their_alerts_are_shown(store, monkeypatch):
    monkeypatch.setenv("DEEPGRAM_API_KEY", "x")
    registry = [Credential("deepgram", "DEEPGRAM_API_KEY", expires_at=NOW + 12 * DAY_S)]
    client = client_for(store, credentials=registry)
    html = client.get("/dashboard").text
    assert 'id="credential-alerts"' in html and "deepgram ($DEEPGRAM_API_KEY): expiring" in html
    [status] = client.get("/api/ops/credentials").json()["credentials"]
    assert (status["state"], round(status["days_left"])) == ("expiring", 12)


def test_metrics_endpoint(store):
    response = client_for(store).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "voicerail_calls_in_progress" in response.text


def test_api_and_dashboard_refuse_requests_without_the_key(store):
    client = client_for(store, access=AccessSettings(api_key=KEY))
    for path in ("/api/calls", "/api/ops/failures", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200
    page = client.get("/dashboard/calls?outcome=failed", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/dashboard/calls%3Foutcome%3Dfailed"
    assert client.get("/healthz").status_code == 200  # liveness stays open
    assert client.post("/twilio/voice", data={"CallSid": "CA1"}).status_code == 200


def test_login_sets_a_session_cookie_and_logout_ends_it(store):
    client = client_for(store, access=AccessSettings(api_key=KEY, password="hunter22"))
    assert 'name="secret"' in client.get("/login").text
    wrong = client.post("/login", data={"secret": "nope", "next": "/dashboard"})
    assert wrong.status_code == 401 and "wrong key or password" in wrong.text
    ok = client.post(
        "/login", data={"secret": "hunter22", "next": "/dashboard/calls"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard/calls"
    assert "httponly" in ok.headers["set-cookie"].lower()
    assert client.get("/dashboard", follow_redirects=False).status_code == 200
    assert client.get("/api/ops/halve").status_code == 200
    client.post("/logout", follow_redirects=False)
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    away = client.post(
        "/login", data={"secret": KEY, "next": "//evil.example/"}, follow_redirects=False
    )
    assert away.headers["location"] == "/dashboard"  # no open redirect


def test_session_cookies_expire_and_cannot_be_forged():
    access = AccessSettings(api_key=KEY, session_ttl_s=60)
    cookie = access.session_cookie(NOW)
    assert access.valid_cookie(cookie, NOW + 59)
    assert not access.valid_cookie(cookie, NOW + 61)
    expiry, mac = cookie.split(".")
    assert not access.valid_cookie(f"{int(expiry) + 3600}.{mac}", NOW)
    assert not AccessSettings(api_key="other").valid_cookie(cookie, NOW)
    assert not access.valid_cookie("garbage", NOW)
    assert COOKIE == "voicerail_session"


def test_binding_beyond_loopback_without_a_key_is_warned_about():
    assert exposure_warning("127.0.0.1", AccessSettings()) is None
    assert exposure_warning("::1", AccessSettings()) is None
    assert exposure_warning("0.0.0.0", AccessSettings(api_key=KEY)) is None
    warning = exposure_warning("0.0.0.0", AccessSettings())
    assert warning is not None and "VOICERAIL_API_KEY" in warning


def test_metrics_include_the_crm_outbox(store):
    """With a CRM configured, /metrics reports its outbox rows (crm/metrics.py)."""
    from voicerail.crm.model import CRMWrite, WriteAction
    from voicerail.crm.outbox import SQLiteOutbox
    from voicerail.crm.relay import Relay
    from voicerail.crm.service import CRMService
    from voicerail.testing.crm import InMemoryCRM

    outbox = SQLiteOutbox(":memory:")
    outbox.record("c", "{}", [CRMWrite("c:t1:book:0", "c", WriteAction.BOOKING)], NOW - 5.0)
    crm = InMemoryCRM()
    service = CRMService(crm, outbox, Relay(outbox, crm, "r", clock=FakeClock(NOW)))
    text = client_for(store, crm=service).get("/metrics").text
    assert 'voicerail_crm_outbox_rows{state="pending"} 1.0' in text
    assert "voicerail_crm_outbox_oldest_pending_age_seconds 5.0" in text
    outbox.close()
