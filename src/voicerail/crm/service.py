"""The CRM of one server: a connector, the outbox and its relay, chosen from the environment.

Settings (environment variables; nothing set means no CRM and today's direct
booking writes):

* ``VOICERAIL_CRM``: ``embedded`` (SQLite ``<data dir>/crm.sqlite3``; bookings
  land in the booking store too), ``hubspot``, ``salesforce`` or ``webhook``.
* HubSpot: ``VOICERAIL_HUBSPOT_TOKEN`` (a private app token) or
  ``VOICERAIL_HUBSPOT_CLIENT_ID`` / ``_CLIENT_SECRET`` / ``_REFRESH_TOKEN``;
  ``VOICERAIL_HUBSPOT_URL`` overrides the API base.
* Salesforce: ``VOICERAIL_SALESFORCE_INSTANCE_URL``, ``VOICERAIL_SALESFORCE_TOKEN``
  and/or ``_CLIENT_ID`` / ``_CLIENT_SECRET`` / ``_REFRESH_TOKEN``,
  ``VOICERAIL_SALESFORCE_LOGIN_URL``.
* Webhook: ``VOICERAIL_CRM_WEBHOOK_URL`` and ``VOICERAIL_CRM_WEBHOOK_SECRET``.
* The outbox is ``<data dir>/outbox.sqlite3``, or the PostgreSQL database of
  the event store when there is one.

The relay runs inside the server's lifespan (``server/operations.py``); one
relay per process, and several processes may share an outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from voicerail.clock import Clock, SystemClock
from voicerail.crm.model import CRMConnector
from voicerail.crm.outbox import Outbox, SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.dialog.base import DialogFactory
from voicerail.dialog.bookings import Bookings, BookingStore
from voicerail.errors import ConfigError

if TYPE_CHECKING:
    from voicerail.dialog.flows import FlowAgent

KINDS = ("embedded", "hubspot", "salesforce", "webhook")


@dataclass
class CRMService:
    """A connector, an outbox and a relay (see the module docstring).

    Attributes:
        connector: the CRM.
        outbox: where writes wait for the relay.
        relay: delivers the outbox to the connector.
        client: the HTTP client of a cloud connector (closed with the service).
    """

    connector: CRMConnector
    outbox: Outbox
    relay: Relay
    client: httpx.AsyncClient | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _stop: asyncio.Event | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start relaying in the running event loop."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.relay.run(stop=self._stop), name="crm-relay")

    async def aclose(self) -> None:
        """Stop the relay (rows it holds are leased and re-claimed later) and close."""
        if self._task is not None and self._stop is not None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.client is not None:
            await self.client.aclose()


def open_crm(
    data_dir: Path,
    bookings: BookingStore,
    *,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> CRMService | None:
    """The CRM the environment names, or None when ``VOICERAIL_CRM`` is unset.

    Raises:
        ConfigError: an unknown kind, or a setting the kind needs is missing.
    """
    env = os.environ if environ is None else environ
    kind = env.get("VOICERAIL_CRM", "").strip().lower()
    if not kind:
        return None
    if kind not in KINDS:
        raise ConfigError(
            f"unknown crm {kind!r}, expected one of {', '.join(KINDS)}", source="$VOICERAIL_CRM"
        )
    client = None if kind == "embedded" else httpx.AsyncClient(timeout=10.0)
    connector = _connector(kind, env, data_dir, bookings, client)
    outbox: Outbox
    if database_url:
        from voicerail.crm.outbox_pg import PostgresOutbox

        outbox = PostgresOutbox(database_url)
    else:
        outbox = SQLiteOutbox(data_dir / "outbox.sqlite3")
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    relay = Relay(outbox, connector, owner, clock=clock or SystemClock())
    return CRMService(connector, outbox, relay, client)


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError("missing", source=f"${name}")
    return value


def _oauth(env: Mapping[str, str], prefix: str) -> dict[str, str] | None:
    names = ("client_id", "client_secret", "refresh_token")
    values = {n: env.get(f"{prefix}_{n.upper()}", "") for n in names}
    return values if all(values.values()) else None


def _connector(
    kind: str,
    env: Mapping[str, str],
    data_dir: Path,
    bookings: BookingStore,
    client: httpx.AsyncClient | None,
) -> CRMConnector:
    if kind == "embedded":
        from voicerail.crm.embedded import EmbeddedCRM

        return EmbeddedCRM(data_dir / "crm.sqlite3", bookings=bookings)
    assert client is not None
    if kind == "hubspot":
        from voicerail.crm.hubspot import HubSpotCRM

        oauth = _oauth(env, "VOICERAIL_HUBSPOT")
        token = env.get("VOICERAIL_HUBSPOT_TOKEN") or None
        if token is None and oauth is None:
            raise ConfigError(
                "missing (or the OAuth client and refresh token)", source="$VOICERAIL_HUBSPOT_TOKEN"
            )
        return HubSpotCRM(
            client,
            base_url=env.get("VOICERAIL_HUBSPOT_URL", "https://api.hubapi.com"),
            access_token=token,
            oauth=oauth,
        )
    if kind == "salesforce":
        from voicerail.crm.salesforce import SalesforceCRM

        oauth = _oauth(env, "VOICERAIL_SALESFORCE")
        return SalesforceCRM(
            client,
            instance_url=_need(env, "VOICERAIL_SALESFORCE_INSTANCE_URL"),
            access_token=env.get("VOICERAIL_SALESFORCE_TOKEN") or None,
            oauth=oauth,
            login_url=env.get("VOICERAIL_SALESFORCE_LOGIN_URL", "https://login.salesforce.com"),
        )
    from voicerail.crm.webhook import WebhookCRM

    return WebhookCRM(
        client,
        _need(env, "VOICERAIL_CRM_WEBHOOK_URL"),
        _need(env, "VOICERAIL_CRM_WEBHOOK_SECRET").encode(),
    )


def flow_bookings(bookings: BookingStore, crm: CRMService | None) -> Bookings:
    """What the flow engine books through: the outbox with a CRM, else the table."""
    if crm is None:
        return bookings
    from voicerail.crm.bookings import OutboxBookings

    return OutboxBookings(bookings, crm.outbox)


def with_crm(flows: FlowAgent, crm: CRMService | None, source: str) -> DialogFactory:
    """The flow agent wrapped for caller recognition, handoff summaries and the
    extra handoff rules (``handoff/contextual.py``), from its file's ``context``
    and ``handoff_rules`` sections.

    Raises:
        ConfigError: either section is invalid.
    """
    from voicerail.crm.gate import ContextPolicy
    from voicerail.handoff.contextual import ContextualAgent
    from voicerail.handoff.rules import HandoffPolicy

    rules = flows.spec.handoff_rules
    return ContextualAgent(
        flows,
        crm=crm.connector if crm is not None else None,
        policy=ContextPolicy.from_mapping(flows.spec.context, source),
        outbox=crm.outbox if crm is not None else None,
        rules=HandoffPolicy.from_mapping(rules, source) if rules is not None else None,
        handoff_text=flows.spec.handoff.text,
    )
