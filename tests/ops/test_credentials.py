"""The credential registry, live checks against fake provider APIs, and start-up validation."""

from __future__ import annotations

import base64

import httpx
import pytest

from voicerail.errors import ConfigError, CredentialError
from voicerail.ops.credentials import (
    DAY_S,
    Credential,
    check_all,
    discover,
    load_registry,
    parse_expiry,
    run_check,
    status_of,
    validate_at_startup,
)

NOW = 1_800_000_000.0
ENV = {
    "OPENAI_API_KEY": "sk-good",
    "DEEPGRAM_API_KEY": "dg-good",
    "ELEVENLABS_API_KEY": "el-bad",
    "CARTESIA_API_KEY": "ca-good",
    "TWILIO_AUTH_TOKEN": "tw-good",
    "TWILIO_ACCOUNT_SID": "AC123",
    "HUBSPOT_ACCESS_TOKEN": "hs-good",
    "CRM_TOKEN": "crm-good",
}


def fake_providers(request: httpx.Request) -> httpx.Response:
    """The providers' documented endpoints, accepting only the "good" secrets."""
    url, headers = request.url, request.headers

    def guarded(ok: bool, body: dict | None = None) -> httpx.Response:
        return httpx.Response(200, json=body or {}) if ok else httpx.Response(401, json={})

    if url.host == "api.openai.com" and url.path == "/v1/models":
        return guarded(headers.get("authorization") == "Bearer sk-good", {"data": []})
    if url.host == "api.deepgram.com" and url.path == "/v1/projects":
        return guarded(headers.get("authorization") == "Token dg-good", {"projects": []})
    if url.host == "api.deepgram.com" and url.path == "/v1/projects/p1/keys/k1":
        item = {"api_key": {"api_key_id": "k1", "expiration_date": "2027-03-15T00:00:00Z"}}
        return guarded(headers.get("authorization") == "Token dg-good", {"item": item})
    if url.host == "api.elevenlabs.io" and url.path == "/v1/user":
        return guarded(headers.get("xi-api-key") == "el-good")
    if url.host == "api.cartesia.ai" and url.path == "/voices":
        return guarded(headers.get("authorization") == "Bearer ca-good")
    if url.host == "api.twilio.com" and url.path == "/2010-04-01/Accounts/AC123.json":
        expected = "Basic " + base64.b64encode(b"AC123:tw-good").decode()
        return guarded(headers.get("authorization") == expected)
    if url.host == "api.hubapi.com" and url.path == "/oauth/v1/access-tokens/hs-good":
        return httpx.Response(200, json={"expires_in": 1800, "token": "hs-good"})
    if url.host == "crm.example.com":
        body = {"token": {"expires_at": "2026-12-31"}}
        return guarded(headers.get("x-token") == "Token crm-good", body)
    if url.host == "down.example.com":
        return httpx.Response(503)
    return httpx.Response(404)


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_providers)) as c:
        yield c


def write(tmp_path, text: str):
    path = tmp_path / "credentials.yaml"
    path.write_text(text)
    return path


def test_discovery_finds_the_variables_the_configuration_reads():
    found = {c.name: c for c in discover(ENV | {"VOICERAIL_LLM_BASE_URL": "http://llm:8000/v1"})}
    assert set(found) == {"openai", "deepgram", "elevenlabs", "cartesia", "twilio", "hubspot"}
    assert found["twilio"].kind == "telephony_token" and found["hubspot"].kind == "crm_token"
    assert found["openai"].options == {"base_url": "http://llm:8000/v1"}
    assert discover({}) == []


def test_file_entries_replace_discovered_ones(tmp_path):
    path = write(
        tmp_path,
        "credentials:\n"
        "  deepgram: {env: DEEPGRAM_API_KEY, expires: 2027-01-20,"
        " options: {project_id: p1, key_id: k1}}\n"
        "  crm: {env: CRM_TOKEN, kind: crm_token, check: http,"
        " options: {url: 'https://crm.example.com/me', header: X-Token, scheme: Token,"
        " expires_field: token.expires_at}}\n",
    )
    registry = {c.name: c for c in load_registry(path, {"DEEPGRAM_API_KEY": "x"})}
    assert set(registry) == {"deepgram", "crm"}
    assert registry["deepgram"].check == "deepgram"
    assert registry["deepgram"].expires_at == parse_expiry("2027-01-20T00:00:00+00:00")
    assert registry["crm"].options["header"] == "X-Token"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("credentials: [a]\n", "expected a 'credentials' mapping"),
        ("credentials:\n  x: {kind: crm_token}\n", "x.env: each credential needs 'env'"),
        ("credentials:\n  x: {env: X, kind: magic}\n", "x.kind: unknown kind 'magic'"),
        ("credentials:\n  x: {env: X, check: psychic}\n", "x.check: unknown check 'psychic'"),
        ("credentials:\n  x: {env: X, expires: soon}\n", "x.expires: expected an ISO date"),
    ],
)
def test_bad_credentials_files_name_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_registry(write(tmp_path, text), {})


async def test_live_checks_against_each_providers_api(client):
    crm_options = {
        "url": "https://crm.example.com/me",
        "header": "X-Token",
        "scheme": "Token",
        "expires_field": "token.expires_at",
    }
    registry = [
        *discover(ENV),
        Credential(
            "dg-key",
            "DEEPGRAM_API_KEY",
            check="deepgram",
            options={"project_id": "p1", "key_id": "k1"},
        ),
        Credential("crm", "CRM_TOKEN", "crm_token", check="http", options=crm_options),
        Credential("down", "CRM_TOKEN", check="http", options={"url": "https://down.example.com"}),
    ]
    statuses = {s.name: s for s in await check_all(registry, client, now_s=NOW, environ=ENV)}
    assert statuses["openai"].state == "ok" and statuses["deepgram"].state == "ok"
    assert statuses["elevenlabs"].state == "refused"
    assert statuses["elevenlabs"].detail == "HTTP 401 from https://api.elevenlabs.io/v1/user"
    assert statuses["cartesia"].state == "ok" and statuses["twilio"].state == "ok"
    hubspot = statuses["hubspot"]
    assert (hubspot.state, hubspot.expires_source) == ("expiring", "provider")
    assert hubspot.expires_at == NOW + 1800
    assert "hs-good" not in hubspot.detail  # the token is in HubSpot's URL, never in messages
    assert statuses["dg-key"].expires_at == parse_expiry("2027-03-15T00:00:00Z")
    assert statuses["crm"].expires_source == "provider"
    assert statuses["down"].state == "unverified"


async def test_twilio_check_needs_the_account_sid(client):
    cred = Credential("twilio", "TWILIO_AUTH_TOKEN", "telephony_token", check="twilio")
    result = await run_check(cred, client, now_s=NOW, environ={"TWILIO_AUTH_TOKEN": "tw-good"})
    assert result is not None and result.ok is None and "TWILIO_ACCOUNT_SID" in result.detail


def test_states_from_configured_expiry():
    cred = Credential("x", "X", expires_at=NOW + 30 * DAY_S)
    assert status_of(cred, None, now_s=NOW, present=True).state == "expiring"
    assert status_of(cred, None, now_s=NOW - 1, present=True).state == "unchecked"
    assert status_of(cred, None, now_s=NOW + 30 * DAY_S, present=True).state == "expired"
    assert status_of(cred, None, now_s=NOW, present=False).state == "missing"


async def test_startup_validation_fails_fast_naming_the_credential(client):
    good = [c for c in discover(ENV) if c.name != "elevenlabs"]
    statuses = await validate_at_startup(good, client, now_s=NOW, environ=ENV)
    assert {s.state for s in statuses} <= {"ok", "expiring"}
    with pytest.raises(CredentialError) as caught:
        await validate_at_startup(discover(ENV), client, now_s=NOW, environ=ENV)
    assert str(caught.value) == (
        "<credentials>: credential 'elevenlabs' ($ELEVENLABS_API_KEY) was refused: "
        "HTTP 401 from https://api.elevenlabs.io/v1/user"
    )
    assert (caught.value.credential, caught.value.env) == ("elevenlabs", "ELEVENLABS_API_KEY")
    missing = [Credential("stripe", "STRIPE_KEY")]
    with pytest.raises(CredentialError, match=r"'stripe' \(\$STRIPE_KEY\) is not set"):
        await validate_at_startup(missing, client, now_s=NOW, environ=ENV)
    expired = [Credential("crm", "CRM_TOKEN", expires_at=NOW - DAY_S)]
    with pytest.raises(CredentialError, match=r"'crm' \(\$CRM_TOKEN\) has expired"):
        await validate_at_startup(expired, client, now_s=NOW, environ=ENV)
