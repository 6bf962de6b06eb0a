"""Operations wiring for the ASGI app: telemetry, metrics, dashboard, access, credentials.

:func:`mount_operations` is the one call ``server/app.py`` makes. It

1. wraps ``runtime.events`` in an :class:`~voicerail.events.telemetry.ObservedEventStore`,
   so every event the driver and router append feeds Prometheus, OpenTelemetry
   (when an OTLP endpoint is configured) and the debug log, redacted;
2. adds ``/metrics``, ``/dashboard…``, ``/api/ops/…`` and, with access
   configured, ``/login`` and ``/logout``;
3. adds the access middleware (``server/auth.py``);
4. runs the credential monitor for the app's lifetime (when credentials are
   registered), and flushes trace export on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette

from voicerail.crm.metrics import OutboxCollector
from voicerail.events.telemetry import Telemetry, build_telemetry
from voicerail.ops.alerts import CredentialMonitor
from voicerail.ops.credentials import (
    Credential,
    CredentialStatus,
    load_registry,
    status_of,
)
from voicerail.server.auth import AccessMiddleware, AccessSettings, login_routes
from voicerail.server.dashboard import DashboardState, dashboard_routes
from voicerail.server.login_throttle import LoginThrottle
from voicerail.server.metrics import metrics_routes
from voicerail.session.runtime import Runtime

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor


@dataclass(frozen=True)
class OperationsSettings:
    """Operations settings of one server.

    Attributes:
        access: API key / login (``server/auth.py``).
        dashboard: serve ``/dashboard`` and ``/api/ops``.
        metrics: serve ``/metrics``.
        otlp_endpoint: OTLP/HTTP collector base URL; traces are exported when set.
        span_processor: an extra span processor (tests: an in-memory exporter).
        credentials_path: the credentials file (``ops/credentials.py``).
        credentials: the registry, when already loaded (wins over the path).
        alert_webhook_url: Slack-compatible webhook for credential alerts.
        credential_check_interval_s: time between credential checks.
        live_credential_checks: ask providers (else configured expiry only).
        data_dir: where the alert state file is kept.
        credential_monitor: run the periodic credential checks here; with several
            workers only the first one does (one checker per host, issue 12).
    """

    access: AccessSettings = field(default_factory=AccessSettings)
    dashboard: bool = True
    metrics: bool = True
    otlp_endpoint: str | None = None
    span_processor: SpanProcessor | None = None
    credentials_path: Path | None = None
    credentials: list[Credential] | None = None
    alert_webhook_url: str | None = None
    credential_check_interval_s: float = 6 * 3600.0
    live_credential_checks: bool = True
    data_dir: Path | None = None
    credential_monitor: bool = True

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> OperationsSettings:
        """Settings from ``VOICERAIL_API_KEY``, ``VOICERAIL_DASHBOARD_PASSWORD``,
        ``VOICERAIL_OTLP_ENDPOINT`` (else ``OTEL_EXPORTER_OTLP_ENDPOINT``),
        ``VOICERAIL_CREDENTIALS`` and ``VOICERAIL_ALERT_WEBHOOK``; keyword
        arguments override."""
        env = os.environ if environ is None else environ
        credentials = env.get("VOICERAIL_CREDENTIALS")
        values: dict[str, Any] = {
            "access": AccessSettings(
                api_key=env.get("VOICERAIL_API_KEY") or None,
                password=env.get("VOICERAIL_DASHBOARD_PASSWORD") or None,
            ),
            "otlp_endpoint": env.get("VOICERAIL_OTLP_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or None,
            "credentials_path": Path(credentials) if credentials else None,
            "alert_webhook_url": env.get("VOICERAIL_ALERT_WEBHOOK") or None,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Operations:
    """What :func:`mount_operations` set up (kept on ``app.state.operations``)."""

    telemetry: Telemetry
    registry: list[Credential]
    monitor: CredentialMonitor | None
    client: httpx.AsyncClient | None

    def credential_statuses(self, now_s: float) -> list[CredentialStatus]:
        """The monitor's last statuses, else the configured expiries at ``now_s``."""
        if self.monitor is not None and self.monitor.statuses:
            return self.monitor.statuses
        return [
            status_of(c, None, now_s=now_s, present=bool(os.environ.get(c.env)))
            for c in self.registry
        ]


def mount_operations(
    app: Starlette,
    runtime: Runtime,
    settings: OperationsSettings | None = None,
    login_throttle: LoginThrottle | None = None,
) -> Operations:
    """Add operations to ``app`` (see the module docstring); call before it starts.

    ``login_throttle`` limits failed logins (``server/login_throttle.py``).

    Raises:
        ConfigError: an unreadable or invalid credentials file; an OTLP endpoint
            without the ``otel`` extra.
    """
    settings = settings or OperationsSettings()
    telemetry = build_telemetry(
        otlp_endpoint=settings.otlp_endpoint, span_processor=settings.span_processor
    )
    runtime.events = telemetry.wrap(runtime.events)
    registry = (
        settings.credentials
        if settings.credentials is not None
        else load_registry(settings.credentials_path)
    )
    client = httpx.AsyncClient(timeout=10.0) if registry else None
    monitor = None
    if client is not None and settings.credential_monitor:
        state_dir = settings.data_dir
        monitor = CredentialMonitor(
            registry,
            client,
            webhook_url=settings.alert_webhook_url,
            clock=runtime.clock,
            interval_s=settings.credential_check_interval_s,
            live=settings.live_credential_checks,
            state_path=state_dir / "credential-alerts.json" if state_dir else None,
            on_status=lambda s: telemetry.metrics.set_credential_expiry(
                s.name, s.expires_at - runtime.clock.wall() if s.expires_at else None
            ),
        )
    ops = Operations(telemetry, registry, monitor, client)

    routes = []
    if settings.metrics:
        extra = []
        if runtime.crm is not None:
            collector = OutboxCollector(runtime.crm.outbox, runtime.clock)
            telemetry.metrics.registry.register(collector)
            extra.append(collector)
        routes += metrics_routes(telemetry.metrics.registry, extra_collectors=extra)
    if settings.dashboard:
        state = DashboardState(
            store=lambda: runtime.events,
            now=runtime.clock.wall,
            credentials=lambda: ops.credential_statuses(runtime.clock.wall()),
        )
        routes += dashboard_routes(state)
    if settings.access.enabled:
        routes += login_routes(settings.access, now=runtime.clock.wall, throttle=login_throttle)
    app.router.routes.extend(routes)
    app.add_middleware(AccessMiddleware, access=settings.access, now=runtime.clock.wall)
    _chain_lifespan(app, ops, runtime)
    app.state.operations = ops
    return ops


def _chain_lifespan(app: Starlette, ops: Operations, runtime: Runtime) -> None:
    """Run the credential monitor and the CRM relay inside the app's existing lifespan."""
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        task = asyncio.create_task(ops.monitor.run()) if ops.monitor is not None else None
        if runtime.crm is not None:
            runtime.crm.start()
        try:
            async with previous(app_) as state:
                yield state
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if ops.client is not None:
                await ops.client.aclose()
            if runtime.crm is not None:
                await runtime.crm.aclose()
            await asyncio.to_thread(ops.telemetry.shutdown)

    app.router.lifespan_context = lifespan
