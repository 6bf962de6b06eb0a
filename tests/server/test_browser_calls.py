"""The browser call page at the ASGI app: off by default, behind the login when
access is configured, the socket's Origin checked, and a call over the page's
protocol that a bad frame closes alone (1008)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import AccessSettings
from voicerail.server.browser_calls import same_origin
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.asgi import AsgiWebSocket
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

SILENCE_8K = b"\x00\x00" * 160


@pytest.fixture
def store(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield events
    events.close()


def make_app(store, *, api_key: str | None = None, **settings: Any) -> Any:
    runtime = Runtime(
        agent=QuietAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=store,
        clock=FakeClock(wall_offset_s=time.time()),
    )
    operations = OperationsSettings(access=AccessSettings(api_key=api_key))
    return create_app(runtime, ServerSettings(operations=operations, **settings))


def test_the_page_is_not_served_by_default(store):
    client = TestClient(make_app(store))
    assert client.get("/call").status_code == 404
    assert client.get("/call/worklet.js").status_code == 404


def test_the_page_and_its_scripts_are_served_with_a_strict_csp(store):
    client = TestClient(make_app(store, browser_calls=True))
    page = client.get("/call")
    assert page.status_code == 200 and 'id="transcript"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    worklet = client.get("/call/worklet.js")
    assert worklet.headers["content-type"].startswith("text/javascript")
    assert 'registerProcessor("playback", Playback)' in worklet.text
    assert "/call/media" in client.get("/call/page.js").text


def test_with_an_api_key_the_page_needs_the_login(store):
    client = TestClient(make_app(store, api_key="k", browser_calls=True))
    response = client.get("/call", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/call"
    authorized = client.get("/call", headers={"Authorization": "Bearer k"})
    assert authorized.status_code == 200


@pytest.mark.parametrize(
    ("origin", "host", "public_url", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", None, True),
        ("http://evil.example", "127.0.0.1:8080", None, False),
        (None, "127.0.0.1:8080", None, False),
        ("null", "127.0.0.1:8080", None, False),
        ("https://voice.example.com", "10.0.0.5:8080", "https://voice.example.com", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", None, False),
    ],
)
def test_same_origin(origin, host, public_url, allowed):
    assert same_origin(origin, host, public_url) is allowed


async def test_a_socket_from_another_site_is_refused_before_the_handshake(store):
    app = make_app(store, browser_calls=True)
    socket = AsgiWebSocket(app, "/call/media", origin="http://evil.example")
    close = await socket.receive()
    assert close == {"type": "websocket.close", "code": 1008, "reason": ""}
    await socket.finished()
    assert store.calls() == []


async def test_with_an_api_key_the_socket_needs_the_login(store):
    app = make_app(store, api_key="k", browser_calls=True)
    socket = AsgiWebSocket(app, "/call/media", origin="http://testserver")
    close = await socket.receive()
    assert close["type"] == "websocket.close" and close["code"] == 1008
    await socket.finished()


async def test_a_bad_frame_closes_only_that_browser_call(store):
    """Two pages: the one that sends half a sample is closed with 1008 and fails; the
    other is started, and ends as abandoned when its caller hangs up."""
    app = make_app(store, browser_calls=True)
    calm = AsgiWebSocket(app, "/call/media", origin="http://testserver")
    bad = AsgiWebSocket(app, "/call/media", origin="http://testserver")
    refs = []
    for socket in (calm, bad):
        assert (await socket.receive())["type"] == "websocket.accept"
        socket.send(json.dumps({"event": "start", "sampleRateHz": 8000}))
        started = json.loads((await socket.until("websocket.send"))["text"])
        assert started["event"] == "started" and started["sampleRateHz"] == 8000
        refs.append(started["callRef"])
        socket.send(SILENCE_8K)
    bad.send(b"\x00\x00\x00")
    close = await bad.until("websocket.close")
    assert close["code"] == 1008 and "audio frame of 3 bytes" in close["reason"]
    await bad.finished()
    calm.send(json.dumps({"event": "hangup"}))
    await calm.finished()
    records = {c.call_sid: c for c in store.calls()}
    assert {ref: records[ref].outcome for ref in refs} == {refs[0]: "abandoned", refs[1]: "failed"}
    assert records[refs[0]].data["transport"] == "browser"
    assert refs[0] != refs[1] and all(ref.startswith("web_") for ref in refs)
