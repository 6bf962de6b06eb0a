"""Outbox rule 6: an entity's writes (a booking, its reschedule, its cancel) reach the CRM
in order, coalesced to the final state, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import Outbox, RetryPolicy, SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.testing.clock import FakeClock
from voicerail.testing.crm import InMemoryCRM

ENTITY = "booking:BK-00C0FFEE"


def state(key: str, status: str = "booked", at: str = "10:30", entity: str = ENTITY) -> CRMWrite:
    props = {"name": "Ada Lovelace", "day": "2026-12-08", "time": at, "status": status}
    return CRMWrite(key, "call-1", WriteAction.BOOKING, props, entity=entity)


def relay(outbox: Outbox, crm: InMemoryCRM, clock: FakeClock, owner: str = "r1") -> Relay:
    return Relay(outbox, crm, owner, clock=clock, policy=RetryPolicy(base_s=1.0), lease_s=30.0)


async def drain(r: Relay, clock: FakeClock, steps: int = 20) -> None:
    for _ in range(steps):
        await r.run_once()
        clock.advance(1.0)


def statuses(outbox: Outbox) -> list[str]:
    return [row[2] for row in outbox.entity_rows(ENTITY)]  # type: ignore[attr-defined]


async def test_a_booking_cancelled_before_delivery_reaches_the_crm_only_cancelled(
    outbox: Outbox,
) -> None:
    """Booked then cancelled before the relay ran: one delivery, of the cancelled state."""
    clock, crm = FakeClock(), InMemoryCRM()
    outbox.record("call-1", "{}", [state("k-book")], clock.wall())
    outbox.record("call-1", "{}", [state("k-cancel", status="cancelled")], clock.wall())
    await drain(relay(outbox, crm, clock), clock)
    assert [w.idempotency_key for w in crm.applied] == ["k-cancel"]
    assert crm.records[ENTITY]["status"] == "cancelled"
    assert statuses(outbox) == ["superseded", "delivered"]
    stats = outbox.stats(clock.wall())
    assert (stats.pending, stats.delivered, stats.superseded) == (0, 1, 1)


async def test_a_change_recorded_while_the_first_write_is_in_flight_waits_for_it(
    outbox: Outbox,
) -> None:
    """The booking's write is leased when the reschedule arrives: it is delivered first,
    no relay takes the reschedule meanwhile, and the reschedule lands last."""
    clock, crm = FakeClock(), InMemoryCRM()
    outbox.record("call-1", "{}", [state("k-book")], clock.wall())
    (first,) = outbox.claim("r1", 10, clock.wall(), 30.0)
    outbox.record("call-1", "{}", [state("k-move", at="15:00")], clock.wall())
    assert outbox.claim("r2", 10, clock.wall(), 30.0) == []
    await relay(outbox, crm, clock).deliver(first)
    (second,) = outbox.claim("r2", 10, clock.wall(), 30.0)
    assert second.write.idempotency_key == "k-move"
    await relay(outbox, crm, clock, owner="r2").deliver(second)
    assert [w.idempotency_key for w in crm.applied] == ["k-book", "k-move"]
    assert crm.records[ENTITY]["time"] == "15:00" and crm.creates[ENTITY] == 1


async def test_an_older_write_that_failed_is_superseded_not_retried(outbox: Outbox) -> None:
    """The in-flight booking fails after the cancel was recorded: only the cancel is sent."""
    clock = FakeClock()
    crm = InMemoryCRM(scripted={"k-book": ["server_error"]})
    outbox.record("call-1", "{}", [state("k-book")], clock.wall())
    (first,) = outbox.claim("r1", 10, clock.wall(), 30.0)
    outbox.record("call-1", "{}", [state("k-cancel", status="cancelled")], clock.wall())
    await relay(outbox, crm, clock).deliver(first)
    await drain(relay(outbox, crm, clock, owner="r2"), clock)
    assert [w.idempotency_key for w in crm.applied] == ["k-cancel"]
    assert statuses(outbox) == ["superseded", "delivered"]


async def test_a_killed_relays_older_write_is_superseded_once_its_lease_expires(
    outbox: Outbox,
) -> None:
    """A relay died holding the booking's write; after its lease the cancel goes alone."""
    clock, crm = FakeClock(), InMemoryCRM()
    outbox.record("call-1", "{}", [state("k-book")], clock.wall())
    outbox.claim("dead-relay", 10, clock.wall(), 30.0)
    outbox.record("call-1", "{}", [state("k-cancel", status="cancelled")], clock.wall())
    clock.advance(31.0)
    await drain(relay(outbox, crm, clock), clock)
    assert [w.idempotency_key for w in crm.applied] == ["k-cancel"]
    assert statuses(outbox) == ["superseded", "delivered"]


async def test_writes_without_an_entity_are_never_coalesced(outbox: Outbox) -> None:
    """Two call summaries of one call are two records, both delivered."""
    clock, crm = FakeClock(), InMemoryCRM()
    writes = [CRMWrite(f"k{n}", "call-1", WriteAction.CALL_SUMMARY, {"n": n}) for n in (1, 2)]
    outbox.record("call-1", "{}", writes, clock.wall())
    await drain(relay(outbox, crm, clock), clock)
    assert sorted(w.idempotency_key for w in crm.applied) == ["k1", "k2"]


def test_an_outbox_made_before_entities_gains_their_columns(tmp_path) -> None:
    """An outbox file from before rule 6 opens, and takes entity writes."""
    import sqlite3

    from voicerail.crm.outbox import SCHEMA

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
    box = SQLiteOutbox(path)
    assert box.record("call-1", "{}", [state("k-book")], 0.0) == [True]
    assert box.entity_rows(ENTITY) == [("k-book", 1, "pending")]
    box.close()


def relay_in_threads(
    boxes: list[Outbox], crm_log: list[CRMWrite], stop: threading.Event
) -> list[threading.Thread]:
    """Each box claims and 'delivers' (appends to ``crm_log``) until ``stop`` and empty."""
    lock = threading.Lock()

    def run(i: int) -> None:
        box = boxes[i]
        while True:
            entries = box.claim(f"r{i}", 5, 1.0, 600.0)
            if not entries and stop.is_set():
                entries = box.claim(f"r{i}", 5, 1.0, 600.0)
                if not entries:
                    return
            for entry in entries:
                with lock:
                    crm_log.append(entry.write)
                box.complete(entry.write.idempotency_key, f"r{i}", 1.0, "x")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(boxes))]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_relays_apply_each_entitys_writes_in_order(
    request: pytest.FixtureRequest, tmp_path, backend: str
) -> None:
    """Four relays on their own connections run while 40 bookings are each booked,
    moved and cancelled: per booking the CRM sees increasing states and ends cancelled."""
    if backend == "postgres":
        from voicerail.crm.outbox_pg import PostgresOutbox

        url = request.getfixturevalue("postgres_url")
        boxes: list[Outbox] = [PostgresOutbox(url) for _ in range(5)]
    else:
        boxes = [SQLiteOutbox(tmp_path / "shared.sqlite3") for _ in range(5)]
    writer, relays = boxes[0], boxes[1:]
    applied: list[CRMWrite] = []
    stop = threading.Event()
    threads = relay_in_threads(relays, applied, stop)
    steps = [("booked", "10:30"), ("booked", "11:00"), ("booked", "12:00"), ("cancelled", "12:00")]
    for step, (status, at) in enumerate(steps):
        for n in range(40):
            write = state(f"b{n}:{step}", status=status, at=at, entity=f"booking:{n}")
            writer.record("call-1", "{}", [write], 1.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    by_entity: dict[str, list[int]] = {}
    for write in applied:
        by_entity.setdefault(write.record_key, []).append(int(write.idempotency_key[-1]))
    assert len(by_entity) == 40
    for entity, order in by_entity.items():
        assert order == sorted(order) and len(set(order)) == len(order), (entity, order)
        assert order[-1] == 3, (entity, order)
    for box in boxes:
        box.close()


async def test_the_relay_never_calls_the_database_on_the_event_loop(tmp_path) -> None:
    """Claims, completions and failures run in worker threads (relay rule 5)."""
    loop_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []

    class Watched(SQLiteOutbox):
        def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(("claim", threading.get_ident()))
            return super().claim(*args, **kwargs)

        def complete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(("complete", threading.get_ident()))
            return super().complete(*args, **kwargs)

        def fail(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(("fail", threading.get_ident()))
            return super().fail(*args, **kwargs)

    box = Watched(tmp_path / "outbox.sqlite3")
    clock = FakeClock()
    crm = InMemoryCRM(scripted={"k1": ["server_error"]})
    writes = [CRMWrite(f"k{n}", "call-1", WriteAction.CALL_SUMMARY, {"n": n}) for n in (1, 2)]
    box.record("call-1", "{}", writes, clock.wall())
    await drain(relay(box, crm, clock), clock, steps=5)
    assert {name for name, _ in seen} == {"claim", "complete", "fail"}
    assert all(thread != loop_thread for _, thread in seen)
    box.close()


async def test_the_relay_outlives_an_outbox_failure(tmp_path) -> None:
    """Two claims fail (the database is down); the relay keeps running and delivers."""
    import asyncio

    from voicerail.errors import StoreError

    failures = [StoreError("database is locked"), StoreError("database is locked")]

    class Flaky(SQLiteOutbox):
        def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if failures:
                raise failures.pop()
            return super().claim(*args, **kwargs)

    box = Flaky(tmp_path / "outbox.sqlite3")
    clock, crm = FakeClock(), InMemoryCRM()
    box.record("call-1", "{}", [state("k-book")], clock.wall())
    r = relay(box, crm, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(idle_s=0.0, stop=stop))
    async with asyncio.timeout(10.0):  # a deadline for a relay that would never deliver
        while not crm.applied and not task.done():
            await asyncio.sleep(0)
    stop.set()
    await task
    assert r.counts.store_errors == 2 and [w.idempotency_key for w in crm.applied] == ["k-book"]
    box.close()
