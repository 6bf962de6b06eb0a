"""Credential alerts: when to send them, the webhook, and the periodic monitor.

Rules:

1. An alert is due for a credential that is ``expiring`` (30 days or fewer
   left by default), ``expired``, ``refused`` or ``missing``. Each alert has a key
   (credential, state, expiry); a key is sent once. A renewed credential (new
   expiry) or a new state gets a new key and so a new alert.
2. The webhook body is Slack-compatible (incoming webhooks take ``text`` and
   optional ``blocks``; https://api.slack.com/messaging/webhooks, 2025): ``text``
   summarizes, one ``section`` block per alert. No secret is ever in it.
3. A webhook that fails is retried at the next check; its alerts stay unsent.
4. :class:`CredentialMonitor` takes its clock and sleep function, so tests run it
   on a fake clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from voicerail.clock import Clock, SystemClock
from voicerail.ops.credentials import (
    WARN_BEFORE_S,
    Credential,
    CredentialStatus,
    check_all,
)

log = logging.getLogger(__name__)

ALERT_STATES = ("missing", "refused", "expired", "expiring")


@dataclass(frozen=True)
class Alert:
    """One alert about one credential (rule 1)."""

    credential: str
    env: str
    state: str
    expires_at: float | None
    days_left: float | None
    message: str

    @property
    def key(self) -> str:
        """What makes an alert new: credential, state and expiry."""
        return f"{self.credential}:{self.state}:{self.expires_at}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "key": self.key}


def alert_message(status: CredentialStatus) -> str:
    """One line for people, naming the credential and its variable, never the secret."""
    where = f"{status.name} (${status.env})"
    if status.state == "expiring" and status.expires_at is not None:
        day = dt.datetime.fromtimestamp(status.expires_at, tz=dt.UTC).strftime("%Y-%m-%d")
        return f"{where} expires on {day}, in {status.days_left:.0f} days: renew it"
    if status.state == "expired":
        return f"{where} has expired: calls using it fail until it is renewed"
    if status.state == "refused":
        return f"{where} was refused by the provider: {status.detail}"
    return f"{where} is not set"


def due_alerts(statuses: list[CredentialStatus], sent: set[str]) -> list[Alert]:
    """Rule 1: the alerts not yet sent for these statuses."""
    alerts = []
    for status in statuses:
        if status.state not in ALERT_STATES:
            continue
        alert = Alert(
            status.name,
            status.env,
            status.state,
            status.expires_at,
            status.days_left,
            alert_message(status),
        )
        if alert.key not in sent:
            alerts.append(alert)
    return alerts


def slack_payload(alerts: list[Alert], *, service: str = "voicerail") -> dict[str, Any]:
    """Rule 2: the webhook body for ``alerts``."""
    noun = "credential needs" if len(alerts) == 1 else "credentials need"
    return {
        "text": f"{service}: {len(alerts)} {noun} attention",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{a.state}*: {a.message}"}}
            for a in alerts
        ],
    }


async def send_webhook(client: httpx.AsyncClient, url: str, alerts: list[Alert]) -> bool:
    """POST the alerts; True when the webhook answered 2xx (rule 3: False is retried)."""
    try:
        response = await client.post(url, json=slack_payload(alerts), timeout=10.0)
    except httpx.HTTPError as exc:
        log.warning("credential alert webhook unreachable: %s", type(exc).__name__)
        return False
    if response.status_code >= 300:
        log.warning("credential alert webhook answered HTTP %d", response.status_code)
        return False
    return True


class CredentialMonitor:
    """Checks the registry every ``interval_s`` and alerts through a webhook.

    Args:
        registry: the credentials to watch.
        client: the HTTP client for live checks and the webhook.
        webhook_url: where alerts go (None: alerts are only shown).
        clock: wall time for expiry (rule 4).
        sleep: waits between checks (``asyncio.sleep`` unless a test passes its own).
        interval_s: time between checks.
        live: run the providers' live checks (else configured expiry only).
        warn_before_s: how long before expiry a credential is ``expiring``.
        environ: where secrets are read.
        state_path: a JSON file remembering sent alerts across restarts.
        on_status: called with each status after each check (metrics).
    """

    def __init__(
        self,
        registry: list[Credential],
        client: httpx.AsyncClient,
        *,
        webhook_url: str | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        interval_s: float = 6 * 3600.0,
        live: bool = True,
        warn_before_s: float = WARN_BEFORE_S,
        environ: Mapping[str, str] | None = None,
        state_path: Path | None = None,
        on_status: Callable[[CredentialStatus], None] | None = None,
    ) -> None:
        self.registry = registry
        self.client = client
        self.webhook_url = webhook_url
        self.clock = clock or SystemClock()
        self.sleep = sleep
        self.interval_s = interval_s
        self.live = live
        self.warn_before_s = warn_before_s
        self.environ = environ
        self.state_path = state_path
        self.on_status = on_status
        self.statuses: list[CredentialStatus] = []
        self.active: list[Alert] = []
        self.sent: set[str] = self._load_sent()

    def _load_sent(self) -> set[str]:
        if self.state_path is None or not self.state_path.exists():
            return set()
        try:
            return set(json.loads(self.state_path.read_text(encoding="utf-8")).get("sent", []))
        except (OSError, ValueError):
            log.warning("unreadable credential alert state %s; starting afresh", self.state_path)
            return set()

    def _save_sent(self) -> None:
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps({"sent": sorted(self.sent)}), encoding="utf-8")

    async def check_once(self) -> list[Alert]:
        """Check every credential, send the alerts now due; returns the ones sent."""
        self.statuses = await check_all(
            self.registry,
            self.client,
            now_s=self.clock.wall(),
            live=self.live,
            environ=self.environ,
            warn_before_s=self.warn_before_s,
        )
        if self.on_status is not None:
            for status in self.statuses:
                self.on_status(status)
        self.active = due_alerts(self.statuses, set())
        due = [a for a in self.active if a.key not in self.sent]
        if not due or self.webhook_url is None:
            return []
        if not await send_webhook(self.client, self.webhook_url, due):
            return []
        self.sent.update(a.key for a in due)
        self._save_sent()
        return due

    async def run(self) -> None:
        """Check, then sleep ``interval_s``, until cancelled."""
        while True:
            try:
                await self.check_once()
            except Exception:  # task boundary: one bad check must not stop the monitor
                log.exception("credential check failed")
            await self.sleep(self.interval_s)
