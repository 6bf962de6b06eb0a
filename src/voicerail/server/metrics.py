"""``GET /metrics``: the Prometheus text exposition of one registry.

The metrics themselves are fed by events (``events/telemetry.py``,
:class:`~voicerail.events.telemetry.PrometheusSink`); this module only serves them
(https://prometheus.io/docs/instrumenting/exposition_formats/, text format 0.0.4).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def metrics_routes(registry: CollectorRegistry) -> list[Route]:
    """The ``/metrics`` route for ``registry``."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics)]
