"""Behind a reverse proxy: which X-Forwarded-* headers are believed, and Twilio's
signature checked against the URL Twilio requested (server/proxy.py)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from voicerail.errors import ConfigError
from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.proxy import (
    ForwardedHeadersMiddleware,
    ForwardedView,
    TrustedProxies,
    forwarded_view,
)
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

TOKEN = "test-auth-token"
FORM = {"CallSid": "CA123", "From": "+15550001111", "To": "+15550002222"}
LOCAL = TrustedProxies.parse("127.0.0.1")


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in values.items()]


def test_nothing_is_believed_without_trusted_proxies():
    forwarded = headers(x_forwarded_proto="https", x_forwarded_host="evil.example")
    assert forwarded_view("127.0.0.1", forwarded, TrustedProxies()) == ForwardedView()


def test_a_peer_outside_the_list_is_not_believed():
    forwarded = headers(x_forwarded_proto="https", x_forwarded_for="1.2.3.4")
    assert forwarded_view("10.0.0.9", forwarded, LOCAL) == ForwardedView()
    assert forwarded_view(None, forwarded, LOCAL) == ForwardedView()


def test_a_trusted_peer_sets_scheme_host_and_client():
    forwarded = headers(
        x_forwarded_proto="https", x_forwarded_host="voice.example.com", x_forwarded_for="1.2.3.4"
    )
    view = forwarded_view("127.0.0.1", forwarded, LOCAL)
    assert view == ForwardedView("https", "voice.example.com", "1.2.3.4")


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy():
    """Addresses left of the first untrusted hop were written by the client itself."""
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    forwarded = headers(x_forwarded_for="6.6.6.6, 1.2.3.4, 10.1.2.3")
    assert forwarded_view("127.0.0.1", forwarded, trusted).client == "1.2.3.4"
    only_proxies = headers(x_forwarded_for="10.0.0.1, 10.0.0.2")
    assert forwarded_view("127.0.0.1", only_proxies, trusted).client == "10.0.0.1"
    garbled = headers(x_forwarded_for="1.2.3.4, not-an-ip")
    assert forwarded_view("127.0.0.1", garbled, trusted).client is None


def test_star_trusts_every_peer_and_takes_the_leftmost_client():
    forwarded = headers(x_forwarded_proto="https", x_forwarded_for="1.2.3.4, 5.6.7.8")
    view = forwarded_view("203.0.113.5", forwarded, TrustedProxies.parse("*"))
    assert view == ForwardedView("https", None, "1.2.3.4")


def test_the_nearest_proxys_value_wins_and_malformed_values_are_ignored():
    chained = [
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"a.example, b.example:8443"),
    ]
    assert forwarded_view("127.0.0.1", chained, LOCAL) == ForwardedView("https", "b.example:8443")
    bad = headers(x_forwarded_proto="gopher", x_forwarded_host="evil.example/path@x")
    assert forwarded_view("127.0.0.1", bad, LOCAL) == ForwardedView()


def test_a_bad_entry_in_the_list_is_a_config_error_naming_the_option():
    with pytest.raises(ConfigError) as caught:
        TrustedProxies.parse("127.0.0.1, localhost")
    assert str(caught.value) == (
        "--forwarded-allow-ips: expected an IP address or network, got 'localhost'"
    )
    assert not TrustedProxies.parse("")


def test_middleware_rewrites_url_and_client_of_a_trusted_proxys_request():
    async def echo(request: Request) -> JSONResponse:
        client = request.client.host if request.client else None
        return JSONResponse({"url": str(request.url), "client": client})

    app = ForwardedHeadersMiddleware(Starlette(routes=[Route("/x", echo)]), LOCAL)
    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "voice.example.com",
        "X-Forwarded-For": "1.2.3.4",
    }
    trusted = TestClient(app, client=("127.0.0.1", 5000)).get("/x?a=1", headers=forwarded)
    assert trusted.json() == {"url": "https://voice.example.com/x?a=1", "client": "1.2.3.4"}
    other = TestClient(app, client=("10.9.9.9", 5000)).get("/x?a=1", headers=forwarded)
    assert other.json() == {"url": "http://testserver/x?a=1", "client": "10.9.9.9"}


@pytest.fixture
def runtime(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield Runtime(agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=events)
    events.close()


def signed(url: str, form: dict[str, str] = FORM) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, form)}


PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"}


def test_behind_a_trusted_proxy_the_signature_is_checked_against_the_public_url(runtime):
    settings = ServerSettings(twilio_auth_token=TOKEN, forwarded_allow_ips=LOCAL)
    client = TestClient(create_app(runtime, settings), client=("127.0.0.1", 5000))
    public = signed("https://voice.example.com/twilio/voice")
    response = client.post("/twilio/voice", data=FORM, headers={**PROXY_HEADERS, **public})
    assert response.status_code == 200, response.text
    assert '<Stream url="wss://voice.example.com/twilio/media">' in response.text
    internal = signed("http://testserver/twilio/voice")
    refused = client.post("/twilio/voice", data=FORM, headers={**PROXY_HEADERS, **internal})
    assert refused.status_code == 403


def test_forwarded_headers_from_anyone_else_are_ignored_by_default(runtime):
    """A client that forges X-Forwarded-* cannot pass a signature made for another URL."""
    settings = ServerSettings(twilio_auth_token=TOKEN)
    client = TestClient(create_app(runtime, settings), client=("127.0.0.1", 5000))
    public = signed("https://voice.example.com/twilio/voice")
    response = client.post("/twilio/voice", data=FORM, headers={**PROXY_HEADERS, **public})
    assert response.status_code == 403
    internal = signed("http://testserver/twilio/voice")
    assert client.post("/twilio/voice", data=FORM, headers=internal).status_code == 200


def test_the_public_url_wins_and_the_query_string_is_signed(runtime):
    settings = ServerSettings(
        twilio_auth_token=TOKEN, public_url="https://voice.example.com/", forwarded_allow_ips=LOCAL
    )
    client = TestClient(create_app(runtime, settings), client=("127.0.0.1", 5000))
    forged = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "elsewhere.example"}
    with_query = signed("https://voice.example.com/twilio/voice?tenant=a")
    ok = client.post("/twilio/voice?tenant=a", data=FORM, headers={**forged, **with_query})
    assert ok.status_code == 200, ok.text
    assert '<Stream url="wss://voice.example.com/twilio/media">' in ok.text
    without_query = signed("https://voice.example.com/twilio/voice")
    refused = client.post("/twilio/voice?tenant=a", data=FORM, headers=without_query)
    assert refused.status_code == 403
