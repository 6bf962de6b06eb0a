"""The outbox and its relay: exactly once at the CRM under every fault, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest

from voicerail.crm.model import CRMWrite, WriteAction, idempotency_key
from voicerail.crm.outbox import Outbox, RetryPolicy, SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.errors import StoreError
from voicerail.testing.clock import FakeClock
from voicerail.testing.crm import InMemoryCRM, RelayKilled


def booking(call_id: str = "call-1", turn: int = 3) -> CRMWrite:
    args = {"name": "Ada Lovelace", "day": "2026-12-08", "time": "10:30"}
    return CRMWrite(
        idempotency_key(call_id, turn, "book_appointment", args), call_id, WriteAction.BOOKING, args
    )


def relay(outbox: Outbox, crm: InMemoryCRM, clock: FakeClock, owner: str = "r1") -> Relay:
    return Relay(
        outbox,
        crm,
        owner,
        clock=clock,
        policy=RetryPolicy(base_s=1.0, max_attempts=5),
        lease_s=30.0,
    )


async def drain(r: Relay, clock: FakeClock, steps: int = 200, step_s: float = 1.0) -> None:
    for _ in range(steps):
        await r.run_once()
        clock.advance(step_s)


def test_idempotency_key_ignores_argument_order() -> None:
    """The key is the LLM agent's: call, turn, action and a hash of canonical arguments."""
    a = idempotency_key("c", 2, "book", {"x": 1, "y": "z"})
    assert a == idempotency_key("c", 2, "book", {"y": "z", "x": 1})
    assert a.startswith("c:t2:book:") and len(a.rsplit(":", 1)[1]) == 16
    assert a != idempotency_key("c", 3, "book", {"x": 1, "y": "z"})


async def test_replayed_record_queues_a_write_once(outbox: Outbox) -> None:
    """A failover or barge-in replay records the same write again: it is queued once."""
    clock, crm = FakeClock(), InMemoryCRM()
    assert outbox.record("call-1", '{"node": "book"}', [booking()], clock.wall()) == [True]
    assert outbox.record("call-1", '{"node": "book"}', [booking()], clock.wall()) == [False]
    await drain(relay(outbox, crm, clock), clock, steps=3)
    assert list(crm.creates.values()) == [1]
    assert outbox.stats(clock.wall()).delivered == 1


def test_state_and_writes_commit_together_or_not_at_all(tmp_path) -> None:
    """A transaction that fails half way leaves neither the call's state nor its write."""
    box = SQLiteOutbox(tmp_path / "o.sqlite3")

    def explode(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError, match="outbox transaction failed"):
        box.record("call-1", '{"node": "book"}', [booking()], 0.0, also=explode)
    assert box.call_state("call-1") is None
    assert box.stats(0.0).pending == 0
    box.record("call-1", '{"node": "done"}', [booking()], 0.0)
    assert box.call_state("call-1") == '{"node": "done"}'
    box.close()


@pytest.mark.parametrize("fault", ["timeout_after_commit", "rate_limited", "server_error"])
async def test_each_fault_delivers_exactly_once(outbox: Outbox, fault: str) -> None:
    """Two faulty attempts then success: one record at the CRM, the row delivered."""
    clock = FakeClock()
    write = booking()
    crm = InMemoryCRM(scripted={write.idempotency_key: [fault, fault]})
    outbox.record("call-1", "{}", [write], clock.wall())
    r = relay(outbox, crm, clock)
    await drain(r, clock)
    assert crm.attempts == 3
    assert crm.creates[write.idempotency_key] == 1
    assert crm.duplicates == 0
    stats = outbox.stats(clock.wall())
    assert (stats.delivered, stats.pending, stats.dead_lettered) == (1, 0, 0)
    assert r.counts.retried == 2


async def test_retry_waits_for_retry_after(outbox: Outbox) -> None:
    """After a 429 with Retry-After 20 s the row is not tried again before 20 s."""
    clock = FakeClock()
    write = booking()
    crm = InMemoryCRM(scripted={write.idempotency_key: ["rate_limited"]}, retry_after_s=20.0)
    outbox.record("call-1", "{}", [write], clock.wall())
    r = relay(outbox, crm, clock)
    await r.run_once()
    clock.advance(19.0)
    assert await r.run_once() == 0
    clock.advance(1.0)
    assert await r.run_once() == 1
    assert outbox.stats(clock.wall()).delivered == 1


async def test_killed_relay_leaves_a_lease_another_relay_takes_over(outbox: Outbox) -> None:
    """A relay killed mid-batch: after the lease expires a new relay delivers the rest once."""
    clock = FakeClock()
    writes = [booking(turn=t) for t in range(5)]
    crm = InMemoryCRM(scripted={writes[2].idempotency_key: ["kill"]})
    outbox.record("call-1", "{}", writes, clock.wall())
    dying = relay(outbox, crm, clock, owner="dying")
    with pytest.raises(RelayKilled):
        await dying.run_once()
    successor = relay(outbox, crm, clock, owner="successor")
    assert await successor.run_once() == 0  # the leases still hold
    clock.advance(30.0)
    await drain(successor, clock, steps=3)
    assert sorted(crm.creates.values()) == [1] * 5
    assert outbox.stats(clock.wall()).delivered == 5


async def test_a_relay_whose_lease_was_taken_cannot_overwrite_the_outcome(outbox: Outbox) -> None:
    """Fencing: the late relay's complete() is refused; the CRM still has one record."""
    clock, crm = FakeClock(), InMemoryCRM()
    write = booking()
    outbox.record("call-1", "{}", [write], clock.wall())
    slow = relay(outbox, crm, clock, owner="slow")
    (entry,) = outbox.claim("slow", 10, clock.wall(), 30.0)
    clock.advance(31.0)
    fast = relay(outbox, crm, clock, owner="fast")
    assert await fast.run_once() == 1
    await slow.deliver(entry)
    assert slow.counts.fenced == 1 and fast.counts.delivered == 1
    assert crm.creates[write.idempotency_key] == 1


async def test_permanent_errors_and_exhausted_retries_dead_letter(outbox: Outbox) -> None:
    """A 400 is dead-lettered at once; five 503s exhaust max_attempts=5."""
    clock = FakeClock()
    bad, flaky = booking(turn=1), booking(turn=2)
    crm = InMemoryCRM(
        scripted={
            bad.idempotency_key: ["permanent"],
            flaky.idempotency_key: ["server_error"] * 5,
        }
    )
    outbox.record("call-1", "{}", [bad, flaky], clock.wall())
    r = relay(outbox, crm, clock)
    await drain(r, clock, steps=100, step_s=5.0)
    stats = outbox.stats(clock.wall())
    assert (stats.dead_lettered, stats.delivered, stats.pending) == (2, 0, 0)
    assert r.counts.dead_lettered == 2
    assert crm.records == {}


def test_stats_count_failed_rows_and_the_oldest_age(tmp_path) -> None:
    """A row waiting for a retry is pending and failed; its age runs from when it was recorded."""
    box = SQLiteOutbox(":memory:")
    box.record("call-1", "{}", [booking(turn=1), booking(turn=2)], 100.0)
    (first, *_) = box.claim("r", 1, 110.0, 30.0)
    box.fail(first.write.idempotency_key, "r", 110.0, "503:transient", 200.0)
    stats = box.stats(150.0)
    assert stats.to_dict() == {
        "pending": 2,
        "failed": 1,
        "dead_lettered": 0,
        "delivered": 0,
        "oldest_pending_age_s": 50.0,
        "superseded": 0,
    }
    box.close()


def test_retry_backoff_grows_and_is_capped() -> None:
    """Backoff doubles per attempt within [0.5, 1) of the nominal value, up to the cap."""
    policy = RetryPolicy(base_s=1.0, cap_s=10.0)
    delays = [policy.next_attempt_s("k", n, 0.0, None) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(10.0, 2.0 ** (n - 1))
        assert 0.5 * nominal <= delay < nominal
    assert policy.next_attempt_s("k", 1, 0.0, 30.0) == 30.0


async def test_rows_a_killed_relay_never_reached_lose_no_attempt(outbox: Outbox) -> None:
    """Only the row being delivered when the relay died can count an attempt against it."""
    clock = FakeClock()
    writes = [booking(turn=t) for t in range(3)]
    crm = InMemoryCRM(scripted={writes[0].idempotency_key: ["kill"]})
    outbox.record("call-1", "{}", writes, clock.wall())
    with pytest.raises(RelayKilled):
        await relay(outbox, crm, clock, owner="dying").run_once()
    clock.advance(30.0)
    entries = outbox.claim("next", 10, clock.wall(), 30.0)
    # Rows delivered before the kill are done; the killed one and those after it remain.
    assert writes[0].idempotency_key in {e.write.idempotency_key for e in entries}
    assert {(e.attempts, e.claims) for e in entries} == {(1, 2)}


async def test_a_poison_write_that_kills_every_relay_is_dead_lettered(outbox: Outbox) -> None:
    """A write that kills each relay claiming it is given up after max_claims claims."""
    clock = FakeClock()
    write = booking()
    crm = InMemoryCRM(scripted={write.idempotency_key: ["kill"] * 3 + ["server_error"]})
    outbox.record("call-1", "{}", [write], clock.wall())
    policy = RetryPolicy(base_s=1.0, max_attempts=10, max_claims=4)
    for n in range(3):
        with pytest.raises(RelayKilled):
            await Relay(outbox, crm, f"r{n}", clock=clock, policy=policy).run_once()
        clock.advance(31.0)
    last = Relay(outbox, crm, "r3", clock=clock, policy=policy)
    await last.run_once()
    assert last.counts.dead_lettered == 1
    assert outbox.stats(clock.wall()).dead_lettered == 1


def claim_concurrently(boxes: list[Outbox]) -> list[str]:
    """Each box drains the outbox in its own thread; returns every key claimed."""
    import threading

    claimed: list[list[str]] = [[] for _ in boxes]

    def drain(i: int) -> None:
        while entries := boxes[i].claim(f"r{i}", 7, 1.0, 60.0):
            claimed[i] += [e.write.idempotency_key for e in entries]

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(boxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [k for part in claimed for k in part]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_claims_never_share_a_row(
    request: pytest.FixtureRequest, tmp_path, backend: str
) -> None:
    """Four relays on their own connections claim at once (SKIP LOCKED on PostgreSQL, the
    write lock on SQLite): every row is claimed exactly once."""
    if backend == "postgres":
        from voicerail.crm.outbox_pg import PostgresOutbox

        url = request.getfixturevalue("postgres_url")
        boxes: list[Outbox] = [PostgresOutbox(url) for _ in range(4)]
    else:
        boxes = [SQLiteOutbox(tmp_path / "shared.sqlite3") for _ in range(4)]
    writes = [booking(call_id=f"c{n}") for n in range(400)]
    boxes[0].record("c", "{}", writes, 0.0)
    keys = claim_concurrently(boxes)
    assert sorted(keys) == sorted(w.idempotency_key for w in writes)
    for box in boxes:
        box.close()
