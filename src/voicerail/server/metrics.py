"""``GET /metrics``: the Prometheus text exposition of one registry, or of every worker.

The metrics themselves are fed by events (``events/telemetry.py``,
:class:`~voicerail.events.telemetry.PrometheusSink`); this module only serves them
(https://prometheus.io/docs/instrumenting/exposition_formats/, text format 0.0.4).

With several workers (``voicerail serve --workers N``) each process writes its
counters, gauges and histograms to files in ``$PROMETHEUS_MULTIPROC_DIR``, and
whichever worker answers ``/metrics`` sums them all (prometheus-client's
multiprocess mode, https://prometheus.github.io/client_python/multiprocess/,
version 0.26). Collectors that compute their values on each scrape (the CRM
outbox) are not per-process and are exposed as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: Set by the supervisor for its workers (``server/workers.py``).
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_routes(
    registry: CollectorRegistry, *, extra_collectors: Sequence[Collector] = ()
) -> list[Route]:
    """The ``/metrics`` route for ``registry``.

    Args:
        registry: this process's metrics.
        extra_collectors: collectors in ``registry`` that compute their values at
            scrape time; in multiprocess mode they are exposed beside the sums.
    """

    async def metrics(request: Request) -> Response:
        multiproc_dir = os.environ.get(MULTIPROC_DIR_VARIABLE)
        if not multiproc_dir:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(aggregated(multiproc_dir, extra_collectors), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics)]


def aggregated(multiproc_dir: str, extra_collectors: Sequence[Collector] = ()) -> bytes:
    """Every worker's metrics from ``multiproc_dir``, summed, then ``extra_collectors``."""
    from prometheus_client import multiprocess

    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed, path=multiproc_dir)
    body = generate_latest(summed)
    if extra_collectors:
        own = CollectorRegistry()
        for collector in extra_collectors:
            own.register(collector)
        body += generate_latest(own)
    return body
