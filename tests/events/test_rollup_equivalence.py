"""Rollup answers equal the event-scan answers, on SQLite and PostgreSQL (issue 16).

Histories are seeded random: calls around a UTC midnight (so calls cross minute,
hour and day buckets), events written before their call row, late events after
the call ended, call rows re-saved with another start or outcome, many small
batches; windows start and end off the minute.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator

import psycopg
import pytest

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.postgres import PostgresEventStore
from voicerail.events.rollups import TABLES
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.ops import reports

MIDNIGHT = 1_800_000_000.0 - 1_800_000_000 % 86400
KINDS = [
    EventKind.PROVIDER_ATTEMPTED,
    EventKind.TRANSCRIPT_FINAL,
    EventKind.PROTOCOL_ERROR,
    EventKind.PROVIDER_FAILED_OVER,
    EventKind.USER_TURN_ENDED,
]


def random_history(seed: int, num_calls: int) -> list[list[tuple[str, object]]]:
    """Per call, its writes in order: ("call", CallRecord) or ("event", Event)."""
    rng = random.Random(seed)
    calls = []
    for i in range(num_calls):
        call_id = f"c{seed}-{i:03d}"
        start = MIDNIGHT + rng.uniform(-3 * 3600, 3 * 3600)
        agent = rng.choice(["clinic", "sales"])
        events, t = [], start
        for _ in range(rng.randint(0, 12)):
            t += rng.uniform(0.0, 40.0)
            events.append(random_event(rng, call_id, t, start))
        outcome = rng.choice(["completed", "failed", "failed", "abandoned", "handoff", None])
        writes: list[tuple[str, object]] = []
        if rng.random() < 0.8:  # else the events come before any call row
            writes.append(("call", CallRecord(call_id, agent, start)))
        late = [e for e in events if rng.random() < 0.15]
        writes += [("event", e) for e in events if e not in late]
        writes.append(("call", CallRecord(call_id, agent, start, t, outcome)))
        writes += [("event", e) for e in late]  # late: after the call's end was saved
        if rng.random() < 0.1:  # re-saved: another start (another bucket) or outcome
            moved = start + rng.choice([-7200.0, 45.0])
            writes.append(("call", CallRecord(call_id, agent, moved, t, rng.choice(OUTCOMES))))
        calls.append(writes)
    refused = [
        Event(f"refused-{seed}-{i}", EventKind.CALL_REFUSED, MIDNIGHT + rng.uniform(-9000, 9000), 0)
        for i in range(5)
    ]
    calls.append([("event", e) for e in refused])
    return calls


OUTCOMES = ["completed", "failed", "abandoned"]


def random_event(rng: random.Random, call_id: str, t: float, start: float) -> Event:
    kind = rng.choices(KINDS, weights=[8, 2, 1, 1, 1])[0]
    outcome = rng.choice(["ok", "error", "error", "cancelled", None])
    data: dict[str, object] = {}
    if rng.random() < 0.8:
        data["attempt"] = rng.choice([1, 1, 2, 3])
    if kind == EventKind.PROVIDER_ATTEMPTED and rng.random() < 0.7:
        data["cost_usd"] = rng.randint(1, 500) / 10_000
    return Event(
        call_id=call_id,
        kind=kind,
        at_wall=t,
        at_mono=t - start,
        stage=rng.choice([Stage.STT, Stage.LLM, Stage.TTS, Stage.TTS, None]),
        provider=rng.choice(["deepgram", "openai", "elevenlabs", "piper", None]),
        latency_s=rng.choice([None, 0.0, rng.uniform(0.01, 3.0)]),
        outcome=outcome,
        error_class=rng.choice(["timeout", "transient", "permanent"]) if outcome else None,
        data=data,
    )


def write(store, history: list[list[tuple[str, object]]], seed: int) -> None:
    """Interleave the calls' writes (each call's in order), flushing at random."""
    rng = random.Random(seed)
    queues = [list(w) for w in history]
    while queues:
        queue = rng.choice(queues)
        what, item = queue.pop(0)
        if what == "call":
            store.save_call(item)
        else:
            store.append(item)
        if not queue:
            queues.remove(queue)
        if rng.random() < 0.05:
            store.flush()
    store.flush()


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path) -> Iterator:
    """A function opening the test's store (the same database each time)."""
    opened = []

    def open_(**kw):
        if request.param == "sqlite":
            store = SQLiteEventStore(tmp_path / "events.sqlite3", batch_max=7, **kw)
        else:
            url = request.getfixturevalue("postgres_url")
            store = PostgresEventStore(url, batch_max=7, partition_s=3 * 3600.0, **kw)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def answers(store, now_s: float, *, scan: bool) -> dict:
    return {
        "failures 15m": reports.failures(store, window_s=900, now_s=now_s, scan=scan),
        "failures 1h": reports.failures(store, window_s=3600.25, now_s=now_s, scan=scan),
        "failures 1d": reports.failures(store, window_s=86400, now_s=now_s, scan=scan),
        "cost": reports.cost(store, weeks=2, now_s=now_s, scan=scan),
        "halve 7d": reports.halve(store, window_s=7 * 86400, now_s=now_s, scan=scan),
        "halve 2h": reports.halve(store, window_s=7200, now_s=now_s, scan=scan),
        "health": reports.provider_health(store, window_s=5 * 3600, now_s=now_s, scan=scan),
    }


def assert_rollups_equal_scans(store, seed: int) -> None:
    rng = random.Random(seed)
    nows = [MIDNIGHT, MIDNIGHT + 3 * 3600 + 0.5, MIDNIGHT + 4 * 86400]
    nows += [MIDNIGHT + rng.uniform(-4 * 3600, 4 * 3600) for _ in range(4)]
    for now_s in nows:
        got, expected = answers(store, now_s, scan=False), answers(store, now_s, scan=True)
        for name in expected:
            assert got[name] == expected[name], f"{name} at now={now_s}"


@pytest.mark.parametrize("seed", [1, 2])
def test_rollup_answers_equal_scan_answers_on_random_histories(open_store, seed):
    """Late events, events before call rows, moved calls, calls across buckets."""
    store = open_store()
    write(store, random_history(seed, 60), seed)
    assert_rollups_equal_scans(store, seed)


def test_a_call_across_midnight_counts_its_attempts_where_they_ended():
    """Bucket boundary inside a call: the call belongs to the day it started in,
    each attempt to the day it ended in."""
    from voicerail.events.rollup_reads import attempt_counts, call_counts

    store = SQLiteEventStore(":memory:")
    store.save_call(CallRecord("a", "clinic", MIDNIGHT - 10, MIDNIGHT + 20, "completed"))
    for t, outcome in [(MIDNIGHT - 5, "error"), (MIDNIGHT + 5, "ok")]:
        store.append(
            Event(
                "a",
                EventKind.PROVIDER_ATTEMPTED,
                t,
                0.0,
                stage=Stage.TTS,
                provider="piper",
                outcome=outcome,
                data={"attempt": 1},
            )
        )
    before, after = (MIDNIGHT - 86400, MIDNIGHT), (MIDNIGHT, MIDNIGHT + 86400)
    assert call_counts(store, *before).calls == 1 and call_counts(store, *after).calls == 0
    [day_one] = attempt_counts(store, *before)
    [day_two] = attempt_counts(store, *after)
    assert (day_one.attempts, day_one.failed, day_one.calls) == (1, 1, 1)
    assert (day_two.attempts, day_two.failed, day_two.calls) == (1, 0, 0)
    store.close()


def test_a_late_recovery_moves_a_failed_calls_cause(open_store):
    """A late ``ok`` attempt in the failing stage recovers the failure: the call's
    cause moves to its next unrecovered failure."""
    store = open_store()
    start = MIDNIGHT - 30

    def attempt(seq_t: float, stage: Stage, provider: str, outcome: str) -> Event:
        error_class = "timeout" if outcome == "error" else None
        return Event(
            "f", EventKind.PROVIDER_ATTEMPTED, start + seq_t, seq_t, stage=stage,
            provider=provider, outcome=outcome, error_class=error_class,
        )  # fmt: skip

    store.append(attempt(1, Stage.STT, "deepgram", "error"))
    store.append(attempt(2, Stage.TTS, "elevenlabs", "error"))
    store.save_call(CallRecord("f", "clinic", start, start + 3, "failed"))
    store.flush()
    first = reports.halve(store, window_s=3600, now_s=MIDNIGHT + 60)["causes"]
    assert [(c["stage"], c["provider"]) for c in first] == [("stt", "deepgram")]
    store.append(attempt(1.5, Stage.STT, "azure", "ok"))  # late
    store.flush()
    moved = reports.halve(store, window_s=3600, now_s=MIDNIGHT + 60)
    assert [(c["stage"], c["provider"]) for c in moved["causes"]] == [("tts", "elevenlabs")]
    assert moved == reports.halve(store, window_s=3600, now_s=MIDNIGHT + 60, scan=True)


def rollup_rows(store) -> dict[str, dict]:
    """Every rollup table's non-zero rows (costs rounded)."""
    tables = {}
    for table, (dims, _measures) in TABLES.items():
        rows = {}
        for r in store.fetch(f"SELECT * FROM {table}"):
            key, values = (
                tuple(r[: 2 + len(dims)]),
                [round(float(v), 9) for v in r[2 + len(dims) :]],
            )
            if any(values):
                rows[key] = values
        tables[table] = rows
    return tables


def run_sql(store, sql: str) -> None:
    """A statement outside the store (an operator's, or a failed migration's)."""
    if isinstance(store, PostgresEventStore):
        with psycopg.connect(store.url, autocommit=True) as db:
            db.execute(sql)
    else:
        db = sqlite3.connect(store.path)
        db.execute(sql)
        db.commit()
        db.close()


def test_rebuild_after_a_dropped_rollup_table_gives_the_rollups_kept_on_write(open_store):
    store = open_store()
    write(store, random_history(3, 40), 3)
    kept = rollup_rows(store)
    store.close()
    run_sql(store, "DROP TABLE rollup_attempts")
    run_sql(store, "DELETE FROM rollup_causes")
    reopened = open_store()
    assert reopened.rebuilt_on_open  # a rollup table was missing
    assert rollup_rows(reopened) == kept
    run_sql(reopened, "DELETE FROM call_causes")
    reopened.rebuild_rollups()
    assert rollup_rows(reopened) == kept
    assert_rollups_equal_scans(reopened, 3)


def test_a_store_opened_without_rollups_answers_by_scanning(open_store):
    """``rollups=False`` marks them stale: answers stay right (from the events)."""
    store = open_store()
    write(store, random_history(4, 10), 4)
    expected = answers(store, MIDNIGHT, scan=True)
    store.close()
    without = open_store(rollups=False)
    write(without, random_history(5, 10), 5)
    assert answers(without, MIDNIGHT, scan=False) == answers(without, MIDNIGHT, scan=True)
    assert answers(without, MIDNIGHT, scan=False) != expected
    without.close()
    rebuilt = open_store()
    assert rebuilt.rebuilt_on_open
    assert_rollups_equal_scans(rebuilt, 5)


def test_a_failing_rollup_update_keeps_the_events_and_marks_the_rollups_stale(
    open_store, monkeypatch, caplog
):
    """A bug in the rollups never costs events: the batch is written without them,
    the answers fall back to scanning, and a rebuild restores them."""
    from voicerail.events.rollup_writer import RollupBatch
    from voicerail.events.rollups import rollups_ready

    store = open_store()

    def broken(self, tx):
        raise RuntimeError("rollup bug")

    monkeypatch.setattr(RollupBatch, "write_after", broken)
    write(store, random_history(6, 8), 6)
    assert "rollups failed" in caplog.text
    expected_events = sum(what == "event" for c in random_history(6, 8) for what, _ in c)
    assert store.fetch("SELECT COUNT(*) FROM events") == [(expected_events,)]
    assert not rollups_ready(store)
    monkeypatch.undo()
    store.rebuild_rollups()
    assert rollups_ready(store)
    write(store, random_history(7, 8), 7)
    assert_rollups_equal_scans(store, 7)


@pytest.mark.parametrize("seed", [8])
def test_rollup_reads_equal_scans_on_windows_off_the_minute(open_store, seed):
    """The building blocks read raw rows for a window's unaligned edges: equal to the
    scans for any bounds (the answers themselves use whole minutes)."""
    from voicerail.events import queries, rollup_reads

    store = open_store()
    write(store, random_history(seed, 50), seed)
    rng = random.Random(seed)
    # Bounds just around stored times, so that the raw edges hold rows.
    times = sorted(
        t for (t,) in store.fetch("SELECT at_wall FROM events UNION SELECT started_at FROM calls")
    )
    for _ in range(30):
        first, last = sorted(rng.sample(times, 2))
        start, end = first - rng.uniform(0, 2), last + rng.uniform(0, 2)
        for name in (
            "call_counts",
            "refused_count",
            "attempt_counts",
            "provider_costs",
            "cause_counts",
            "latency_histograms",
        ):
            got = getattr(rollup_reads, name)(store, start, end)
            assert got == getattr(queries, name)(store, start, end), (name, start, end)
