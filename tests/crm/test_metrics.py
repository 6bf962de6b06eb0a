"""The outbox on /metrics: counts by state and the oldest pending age, read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from voicerail.crm.metrics import OutboxCollector
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.testing.clock import FakeClock


def test_metrics_follow_the_outbox() -> None:
    """Each scrape reads the outbox now: a delivery moves a row from pending to delivered."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    outbox = SQLiteOutbox(":memory:")
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox, clock))
    writes = [CRMWrite(f"c:t{n}:book:0", "c", WriteAction.BOOKING) for n in range(2)]
    outbox.record("c", "{}", writes, clock.wall())
    clock.advance(42.0)
    text = generate_latest(registry).decode()
    assert 'voicerail_crm_outbox_rows{state="pending"} 2.0' in text
    assert "voicerail_crm_outbox_oldest_pending_age_seconds 42.0" in text
    (entry, *_) = outbox.claim("r", 1, clock.wall(), 30.0)
    outbox.complete(entry.write.idempotency_key, "r", clock.wall(), "x")
    text = generate_latest(registry).decode()
    assert 'voicerail_crm_outbox_rows{state="delivered"} 1.0' in text
    assert 'voicerail_crm_outbox_rows{state="pending"} 1.0' in text
    assert 'voicerail_crm_outbox_rows{state="superseded"} 0.0' in text


def test_a_closed_outbox_drops_the_series_not_the_scrape() -> None:
    """A failing outbox read leaves the other metrics scrapable."""
    outbox = SQLiteOutbox(":memory:")
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox, FakeClock()))
    outbox.close()
    assert "voicerail_crm_outbox_rows" not in generate_latest(registry).decode()
