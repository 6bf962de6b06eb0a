"""PostgreSQL at scale (issue 16): events partitioned by time, retention by whole
partitions, several writers keeping the rollups exact together."""

from __future__ import annotations

import threading

import psycopg

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.postgres import PostgresEventStore
from voicerail.events.store import CallRecord
from voicerail.ops import reports

DAY = 86400.0
T0 = 1_800_000_000.0 - 1_800_000_000 % DAY


def partitions(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def attempt(call_id: str, at: float, outcome: str = "ok") -> Event:
    return Event(
        call_id,
        EventKind.PROVIDER_ATTEMPTED,
        at,
        0.0,
        stage=Stage.TTS,
        provider="piper",
        latency_s=0.2,
        outcome=outcome,
        data={"attempt": 1, "cost_usd": 0.01},
    )


def test_events_go_to_one_partition_per_span_and_retention_drops_whole_ones(postgres_url):
    store = PostgresEventStore(postgres_url, partition_s=DAY)
    for day in range(4):
        store.save_call(CallRecord(f"c{day}", "clinic", T0 + day * DAY + 10))
        store.append(attempt(f"c{day}", T0 + day * DAY + 20))
    store.flush()
    assert partitions(postgres_url) == [f"events_p{int(T0 + d * DAY)}" for d in range(4)]
    with psycopg.connect(postgres_url) as db:
        [(kind,)] = db.execute(
            "SELECT relkind FROM pg_class WHERE relname = %s", (f"events_p{int(T0)}",)
        ).fetchall()
        brin = db.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'events_at_brin'")
        assert kind == "r" and "brin" in brin.fetchone()[0]
    before = reports.cost(store, weeks=1, now_s=T0 + 5 * DAY)

    # The partition holding the cut stays whole: only days 0 and 1 go.
    assert store.drop_before(T0 + 2 * DAY + 5) == 2
    assert partitions(postgres_url) == [f"events_p{int(T0 + d * DAY)}" for d in (2, 3)]
    assert [r[0] for r in store.fetch("SELECT call_id FROM events ORDER BY 1")] == ["c2", "c3"]
    # Rollups keep the aggregates of dropped events (no personal data in them).
    assert reports.cost(store, weeks=1, now_s=T0 + 5 * DAY) == before
    # A new event for a dropped day recreates its partition.
    store.append(attempt("c0", T0 + 30))
    store.flush()
    assert f"events_p{int(T0)}" in partitions(postgres_url)
    store.close()


def test_several_writers_at_once_keep_the_rollups_exact(postgres_url):
    """Four stores (as four workers) write the same minutes at once; rollups == scans."""
    PostgresEventStore(postgres_url).close()  # the schema, as the first worker makes it
    stores = [PostgresEventStore(postgres_url, batch_max=5) for _ in range(4)]

    def work(index: int, store: PostgresEventStore) -> None:
        for c in range(30):
            call_id = f"w{index}-{c}"
            start = T0 + c * 7.0
            store.save_call(CallRecord(call_id, "clinic", start))
            for k in range(6):
                store.append(attempt(call_id, start + k, "error" if k % 3 == 0 else "ok"))
            store.save_call(CallRecord(call_id, "clinic", start, start + 6, "failed"))

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for store in stores:
        store.close()
    store = PostgresEventStore(postgres_url)
    now = T0 + 3599.5
    assert reports.failures(store, window_s=3600, now_s=now) == reports.failures(
        store, window_s=3600, now_s=now, scan=True
    )
    answer = reports.halve(store, window_s=3600, now_s=now)
    assert answer == reports.halve(store, window_s=3600, now_s=now, scan=True)
    assert answer["failed_calls"] == 120
    store.close()


def test_a_database_from_before_partitioning_keeps_working_and_gets_rollups(postgres_url):
    """An ``events`` table made by an older version stays a plain table: writes,
    rollups (rebuilt on open) and retention (by ``DELETE``) all work on it."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE events (call_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " kind TEXT NOT NULL, at_wall DOUBLE PRECISION NOT NULL,"
            " at_mono DOUBLE PRECISION NOT NULL, stage TEXT, provider TEXT, model TEXT,"
            " latency_s DOUBLE PRECISION, outcome TEXT, error_class TEXT,"
            " data JSONB NOT NULL DEFAULT '{}', pii JSONB NOT NULL DEFAULT '{}',"
            " PRIMARY KEY (call_id, seq))"
        )
        db.execute(
            "INSERT INTO events (call_id, seq, kind, at_wall, at_mono, stage, provider,"
            " outcome, data) VALUES ('old', 0, 'ProviderAttempted', %s, 0, 'tts', 'piper',"
            " 'error', '{\"attempt\": 1}')",
            (T0 + 5,),
        )
    store = PostgresEventStore(postgres_url)
    assert store.rebuilt_on_open and partitions(postgres_url) == []
    store.append(attempt("new", T0 + DAY))
    store.flush()
    [row] = reports.failures(store, window_s=2 * DAY, now_s=T0 + 2 * DAY)["now"]["providers"]
    assert (row["attempts"], row["failed"]) == (2, 1)
    assert store.drop_before(T0 + DAY) == 1  # rows deleted, not partitions
    assert [r[0] for r in store.fetch("SELECT call_id FROM events")] == ["new"]
    store.close()
