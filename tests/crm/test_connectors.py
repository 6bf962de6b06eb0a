"""HubSpot, Salesforce and webhook connectors against fakes that speak their wire formats."""

from __future__ import annotations

import httpx
import pytest

from voicerail.crm.hubspot import HubSpotCRM
from voicerail.crm.model import CRMWrite, WriteAction, idempotency_key
from voicerail.crm.outbox import RetryPolicy, SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.crm.salesforce import SalesforceCRM
from voicerail.crm.webhook import WebhookCRM, sign, verify_signature
from voicerail.errors import CRMError, ErrorClass
from voicerail.testing.clock import FakeClock
from voicerail.testing.fake_servers.crm import (
    FakeHubSpot,
    FakeSalesforce,
    FakeWebhookReceiver,
    build_hubspot_app,
    build_salesforce_app,
    build_webhook_app,
    run_fake_crm,
)

PHONE = "+15551230000"


def write(turn: int = 3) -> CRMWrite:
    args = {"name": "Ada Lovelace", "day": "2026-12-08", "time": "10:30"}
    key = idempotency_key("call-1", turn, "book_appointment", args)
    return CRMWrite(key, "call-1", WriteAction.BOOKING, args)


def hubspot_fake() -> FakeHubSpot:
    return FakeHubSpot(
        contacts=[
            {
                "id": "501",
                "properties": {
                    "firstname": "Ada",
                    "lastname": "Lovelace",
                    "phone": PHONE,
                    "diagnosis": "hypertension",
                },
            }
        ]
    )


# -- HubSpot -----------------------------------------------------------------


async def test_hubspot_finds_the_caller_asking_only_for_allowed_properties() -> None:
    """The search asks for the configured properties; others never leave HubSpot."""
    fake = hubspot_fake()
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        crm = HubSpotCRM(
            client, base_url=url, access_token="token-0", properties=("firstname", "phone")
        )
        record = await crm.lookup_phone(PHONE)
        assert record is not None and record.crm_id == "501"
        assert dict(record.fields) == {"firstname": "Ada", "phone": PHONE}
        assert await crm.lookup_phone("+15550000000") is None


async def test_hubspot_upserts_by_unique_property_once() -> None:
    """The same write twice: created, then updated; one record in the portal."""
    fake = hubspot_fake()
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        crm = HubSpotCRM(client, base_url=url, access_token="token-0")
        first, second = await crm.upsert(write()), await crm.upsert(write())
    assert (first.created, second.created) == (True, False)
    assert first.crm_id == second.crm_id
    assert list(fake.creates.values()) == [1]
    (record,) = fake.records.values()
    assert record["voicerail_idempotency_key"] == write().idempotency_key
    assert ("POST", "/crm/v3/objects/meetings/batch/upsert") in fake.requests


async def test_hubspot_refreshes_an_expired_token_once() -> None:
    """401 EXPIRED_AUTHENTICATION → POST /oauth/v1/token → the request is sent again."""
    fake = hubspot_fake()
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        crm = HubSpotCRM(client, base_url=url, access_token="token-0", oauth=fake.oauth())
        fake.expire_token()
        assert await crm.lookup_phone(PHONE) is not None
        assert crm.refreshes == 1
        assert ("POST", "/oauth/v1/token") in fake.requests


async def test_hubspot_bad_refresh_token_is_permanent() -> None:
    """A refresh the portal refuses is a permanent error: retrying cannot help."""
    fake = hubspot_fake()
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        oauth = {**fake.oauth(), "refresh_token": "revoked"}
        crm = HubSpotCRM(client, base_url=url, access_token="stale", oauth=oauth)
        with pytest.raises(CRMError) as caught:
            await crm.lookup_phone(PHONE)
    assert caught.value.status == 400
    assert caught.value.error_class is ErrorClass.PERMANENT


async def test_hubspot_ten_second_window_429_waits_out_the_window() -> None:
    """Past the 10-second limit: 429 TEN_SECONDLY_ROLLING, retryable after 10 s."""
    clock = FakeClock()
    fake = hubspot_fake()
    fake.ten_second_limit, fake.clock = 2, clock.monotonic
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        crm = HubSpotCRM(client, base_url=url, access_token="token-0")
        await crm.upsert(write(1))
        await crm.upsert(write(2))
        with pytest.raises(CRMError) as caught:
            await crm.upsert(write(3))
        clock.advance(10.0)
        assert (await crm.upsert(write(3))).created
    error = caught.value
    assert (error.status, error.code, error.retry_after_s) == (429, "TEN_SECONDLY_ROLLING", 10.0)
    assert error.retryable


async def test_hubspot_429_carries_retry_after_and_5xx_is_transient() -> None:
    """Retry-After is read from the header; a 502 is retryable."""
    fake = hubspot_fake()
    fake.fail_next, fake.retry_after_s = [429, 502], 7
    async with run_fake_crm(build_hubspot_app(fake)) as url, httpx.AsyncClient() as client:
        crm = HubSpotCRM(client, base_url=url, access_token="token-0")
        with pytest.raises(CRMError) as limited:
            await crm.upsert(write())
        with pytest.raises(CRMError) as failed:
            await crm.upsert(write())
    assert (limited.value.status, limited.value.retry_after_s) == (429, 7.0)
    assert failed.value.status == 502 and failed.value.retryable
    assert fake.records == {}


# -- Salesforce --------------------------------------------------------------


def salesforce_fake() -> FakeSalesforce:
    return FakeSalesforce(
        contacts=[
            {
                "Id": "003A",
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Phone": PHONE,
                "Card_Number__c": "4111111111111111",
            }
        ]
    )


async def test_salesforce_queries_the_caller_and_upserts_by_external_id() -> None:
    """SOQL on Contact.Phone; PATCH by external id: 201 created, then 200 updated."""
    fake = salesforce_fake()
    async with run_fake_crm(build_salesforce_app(fake)) as url, httpx.AsyncClient() as client:
        crm = SalesforceCRM(client, instance_url=url, access_token="token-0", fields=("FirstName",))
        record = await crm.lookup_phone(PHONE)
        first, second = await crm.upsert(write()), await crm.upsert(write())
    assert record is not None and dict(record.fields) == {"FirstName": "Ada"}
    assert (first.created, second.created) == (True, False)
    assert fake.duplicates == 0 and len(fake.records) == 1
    (method, path) = fake.requests[-1]
    assert method == "PATCH" and path.startswith("/services/data/v60.0/sobjects/Event/")


async def test_salesforce_refreshes_an_invalid_session() -> None:
    """401 INVALID_SESSION_ID → POST /services/oauth2/token → resent with the new token."""
    fake = salesforce_fake()
    async with run_fake_crm(build_salesforce_app(fake)) as url, httpx.AsyncClient() as client:
        crm = SalesforceCRM(
            client, instance_url=url, login_url=url, access_token="token-0", oauth=fake.oauth()
        )
        fake.expire_token()
        assert (await crm.upsert(write())).created
        assert crm.refreshes == 1


async def test_salesforce_request_limit_exceeded_is_retryable_later() -> None:
    """403 REQUEST_LIMIT_EXCEEDED is transient with the configured wait, not permanent."""
    fake = salesforce_fake()
    fake.request_limit = 1
    async with run_fake_crm(build_salesforce_app(fake)) as url, httpx.AsyncClient() as client:
        crm = SalesforceCRM(client, instance_url=url, access_token="token-0", limit_wait_s=120.0)
        await crm.upsert(write(1))
        with pytest.raises(CRMError) as caught:
            await crm.upsert(write(2))
    error = caught.value
    assert (error.status, error.code, error.retry_after_s) == (403, "REQUEST_LIMIT_EXCEEDED", 120.0)
    assert error.retryable


async def test_salesforce_without_refresh_a_401_is_permanent() -> None:
    """A static token that stopped working cannot be fixed by retrying."""
    fake = salesforce_fake()
    async with run_fake_crm(build_salesforce_app(fake)) as url, httpx.AsyncClient() as client:
        crm = SalesforceCRM(client, instance_url=url, access_token="wrong")
        with pytest.raises(CRMError) as caught:
            await crm.upsert(write())
    assert (caught.value.code, caught.value.error_class) == (
        "INVALID_SESSION_ID",
        ErrorClass.PERMANENT,
    )


# -- Webhook -----------------------------------------------------------------


def test_signature_verification_rejects_tampering_and_old_timestamps() -> None:
    """HMAC-SHA256 over timestamp and body: a changed body, key or stale time fails."""
    secret, body = b"s3cret", b'{"type":"write"}'
    signature = sign(secret, 1000, body)
    assert verify_signature(secret, "1000", body, signature, now_s=1010.0) is None
    assert verify_signature(secret, "1000", body + b" ", signature, 1010.0) == "signature mismatch"
    assert verify_signature(b"other", "1000", body, signature, 1010.0) == "signature mismatch"
    assert verify_signature(secret, "1000", body, signature, 1400.0) == (
        "timestamp 400 s away, tolerance 300 s"
    )
    assert verify_signature(secret, None, body, signature, 1000.0) == "missing signature headers"


async def test_webhook_signs_every_request_and_upserts_by_key() -> None:
    """The receiver verifies each request; the same write twice makes one record."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    fake = FakeWebhookReceiver(
        customers={PHONE: {"id": "c1", "fields": {"first_name": "Ada"}}}, now_s=clock.wall
    )
    async with run_fake_crm(build_webhook_app(fake)) as url, httpx.AsyncClient() as client:
        crm = WebhookCRM(client, url + "/hook", fake.secret, clock=clock)
        record = await crm.lookup_phone(PHONE)
        first, second = await crm.upsert(write()), await crm.upsert(write())
    assert record is not None and dict(record.fields) == {"first_name": "Ada"}
    assert (first.created, second.created) == (True, False)
    assert fake.refused == [] and fake.duplicates == 0


async def test_webhook_with_the_wrong_secret_is_refused_permanently() -> None:
    """A receiver that cannot verify the signature answers 401: not retried."""
    fake = FakeWebhookReceiver()
    async with run_fake_crm(build_webhook_app(fake)) as url, httpx.AsyncClient() as client:
        crm = WebhookCRM(client, url + "/hook", b"not-the-secret")
        with pytest.raises(CRMError) as caught:
            await crm.upsert(write())
    assert caught.value.status == 401 and not caught.value.retryable
    assert fake.refused == ["signature mismatch"]


# -- Through the outbox ------------------------------------------------------


@pytest.mark.parametrize("kind", ["hubspot", "salesforce", "webhook"])
async def test_outbox_delivers_once_through_every_fault(kind: str) -> None:
    """Timeout after commit, 429, 5xx and an expired token: one record per key at the CRM."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    fakes = {
        "hubspot": (hubspot_fake(), build_hubspot_app),
        "salesforce": (salesforce_fake(), build_salesforce_app),
        "webhook": (FakeWebhookReceiver(now_s=clock.wall), build_webhook_app),
    }
    fake, build = fakes[kind]
    fake.fail_next, fake.commit_then_delay_s = [429, 503], 0.5
    outbox = SQLiteOutbox(":memory:")
    writes = [write(t) for t in range(3)]
    outbox.record("call-1", "{}", writes, clock.wall())
    async with run_fake_crm(build(fake)) as url, httpx.AsyncClient(timeout=0.2) as client:
        crm = {
            "hubspot": lambda: HubSpotCRM(
                client, base_url=url, access_token="token-0", oauth=fake.oauth()
            ),
            "salesforce": lambda: SalesforceCRM(
                client, instance_url=url, login_url=url, access_token="token-0", oauth=fake.oauth()
            ),
            "webhook": lambda: WebhookCRM(client, url + "/hook", fake.secret, clock=clock),
        }[kind]()
        relay = Relay(outbox, crm, "r1", clock=clock, policy=RetryPolicy(base_s=1.0))
        if kind != "webhook":
            fake.expire_token()
        for _ in range(40):
            await relay.run_once()
            clock.advance(1.0)
        assert getattr(crm, "refreshes", 1) == 1
    assert outbox.stats(clock.wall()).delivered == 3
    assert len(fake.records) == 3 and fake.duplicates == 0
    assert relay.counts.retried >= 3  # the commit-then-timeout, the 429 and the 503
    outbox.close()
