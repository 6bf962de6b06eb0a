"""Credential expiry alerts fire 30 days ahead on a fake clock; a real webhook receives them."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import pytest

from voicerail.ops.alerts import CredentialMonitor, due_alerts, slack_payload
from voicerail.ops.credentials import DAY_S, Credential, status_of
from voicerail.testing.clock import FakeClock

START = 1_800_000_000.0
ENV = {"DEEPGRAM_API_KEY": "dg-secret", "CRM_TOKEN": "crm-secret"}


class Webhook(BaseHTTPRequestHandler):
    """A Slack-compatible incoming webhook on loopback that records what it receives."""

    received: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(Webhook.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_url():
    Webhook.received, Webhook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/voicerail"
    server.shutdown()
    server.server_close()


def monitor_for(registry, client, url, clock, tmp_path=None) -> CredentialMonitor:
    return CredentialMonitor(
        registry,
        client,
        webhook_url=url,
        clock=clock,
        live=False,
        environ=ENV,
        state_path=tmp_path / "alerts.json" if tmp_path else None,
    )


async def test_alert_fires_at_30_days_once_and_again_after_renewal(webhook_url, tmp_path):
    clock = FakeClock(wall_offset_s=START)
    deepgram = Credential("deepgram", "DEEPGRAM_API_KEY", expires_at=START + 40 * DAY_S)
    crm = Credential("crm", "CRM_TOKEN", "crm_token", expires_at=START + 400 * DAY_S)
    async with httpx.AsyncClient() as client:
        monitor = monitor_for([deepgram, crm], client, webhook_url, clock, tmp_path)
        assert await monitor.check_once() == []
        clock.advance(9 * DAY_S)  # 31 days left
        assert await monitor.check_once() == []
        clock.advance(1 * DAY_S)  # 30 days left
        [alert] = await monitor.check_once()
        assert (alert.credential, alert.state, round(alert.days_left)) == (
            "deepgram",
            "expiring",
            30,
        )
        clock.advance(DAY_S)
        assert await monitor.check_once() == []  # sent once
        assert [a.credential for a in monitor.active] == ["deepgram"]  # still shown
        # a restarted server remembers what it sent
        again = monitor_for([deepgram, crm], client, webhook_url, clock, tmp_path)
        assert await again.check_once() == []
        clock.advance(29 * DAY_S)
        [expired] = await monitor.check_once()
        assert expired.state == "expired"
        renewed = Credential("deepgram", "DEEPGRAM_API_KEY", expires_at=clock.wall() + 60 * DAY_S)
        monitor.registry = [renewed, crm]
        assert await monitor.check_once() == [] and monitor.active == []
        clock.advance(30 * DAY_S)
        [alert] = await monitor.check_once()
        assert alert.credential == "deepgram" and alert.expires_at == renewed.expires_at
    assert len(Webhook.received) == 3
    first = Webhook.received[0]
    assert first["text"] == "voicerail: 1 credential needs attention"
    [block] = first["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert "deepgram ($DEEPGRAM_API_KEY) expires on" in block["text"]["text"]
    assert "in 30 days" in block["text"]["text"]
    assert "dg-secret" not in json.dumps(Webhook.received)


async def test_a_failed_webhook_is_retried_at_the_next_check(webhook_url):
    clock = FakeClock(wall_offset_s=START)
    cred = Credential("crm", "CRM_TOKEN", expires_at=START + 10 * DAY_S)
    async with httpx.AsyncClient() as client:
        monitor = monitor_for([cred], client, webhook_url, clock)
        Webhook.status = 500
        assert await monitor.check_once() == []
        Webhook.status = 200
        assert [a.credential for a in await monitor.check_once()] == ["crm"]
    assert len(Webhook.received) == 2


async def test_the_monitor_loop_checks_every_interval_on_the_fake_clock(webhook_url):
    clock = FakeClock(wall_offset_s=START)
    cred = Credential("crm", "CRM_TOKEN", expires_at=START + 31 * DAY_S)
    checks = []

    async def sleep(seconds: float) -> None:
        checks.append(clock.wall())
        clock.advance(seconds)
        if len(checks) == 5:
            raise asyncio.CancelledError

    async with httpx.AsyncClient() as client:
        monitor = monitor_for([cred], client, webhook_url, clock)
        monitor.sleep, monitor.interval_s = sleep, 12 * 3600.0
        with pytest.raises(asyncio.CancelledError):
            await monitor.run()
    assert [round((t - START) / 3600) for t in checks] == [0, 12, 24, 36, 48]
    assert len(Webhook.received) == 1  # the check at 24 h: 30 days left


def test_due_alerts_and_payload_for_each_state():
    statuses = [
        status_of(Credential("a", "A"), None, now_s=START, present=False),
        status_of(Credential("b", "B", expires_at=START - 1), None, now_s=START, present=True),
        status_of(
            Credential("c", "C", expires_at=START + 99 * DAY_S), None, now_s=START, present=True
        ),
    ]
    alerts = due_alerts(statuses, set())
    assert [(a.credential, a.state) for a in alerts] == [("a", "missing"), ("b", "expired")]
    assert due_alerts(statuses, {alerts[0].key}) == alerts[1:]
    payload = slack_payload(alerts)
    assert payload["text"] == "voicerail: 2 credentials need attention"
    assert payload["blocks"][0]["text"]["text"] == "*missing*: a ($A) is not set"
