"""The outbox on ``/metrics``: row counts by state and the oldest pending row's age.

A Prometheus custom collector (https://prometheus.github.io/client_python/collector/custom/):
the figures are read from the outbox at scrape time, so every worker sharing the
outbox reports the same numbers and nothing has to be kept in step.

Metrics::

    voicerail_crm_outbox_rows{state="pending|failed|dead_lettered|delivered"}
    voicerail_crm_outbox_oldest_pending_age_seconds
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from voicerail.clock import Clock
from voicerail.crm.outbox import Outbox
from voicerail.errors import StoreError

log = logging.getLogger(__name__)


class OutboxCollector(Collector):
    """Reads :meth:`~voicerail.crm.outbox.Outbox.stats` at each scrape.

    Args:
        outbox: the outbox to report.
        clock: the wall clock ages are measured on.
    """

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._outbox.stats(self._clock.wall())
        except StoreError as exc:
            # A scrape must not fail the whole page: the outbox series go missing,
            # which an "absent()" alert sees.
            log.warning("outbox stats unavailable: %s", type(exc).__name__)
            return
        rows = GaugeMetricFamily(
            "voicerail_crm_outbox_rows", "CRM outbox rows by state.", labels=["state"]
        )
        rows.add_metric(["pending"], stats.pending)
        rows.add_metric(["failed"], stats.failed)
        rows.add_metric(["dead_lettered"], stats.dead_lettered)
        rows.add_metric(["delivered"], stats.delivered)
        rows.add_metric(["superseded"], stats.superseded)
        yield rows
        yield GaugeMetricFamily(
            "voicerail_crm_outbox_oldest_pending_age_seconds",
            "Age of the oldest CRM write not yet delivered (0 when none).",
            value=stats.oldest_pending_age_s,
        )
