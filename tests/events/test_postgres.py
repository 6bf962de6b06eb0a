"""The PostgreSQL event store keeps the SQLite store's behaviour, on a real server."""

from __future__ import annotations

import threading

import pytest

from voicerail.errors import StoreError
from voicerail.events.model import SCHEMA_VERSION, Event, EventKind, Stage
from voicerail.events.postgres import PostgresEventStore, json_text
from voicerail.events.store import CallRecord, SQLiteEventStore


def event(call_id: str, kind: EventKind, t: float, **kw) -> Event:
    return Event(call_id=call_id, kind=kind, at_wall=1000.0 + t, at_mono=t, **kw)


@pytest.fixture
def store(postgres_url):
    pg = PostgresEventStore(postgres_url, flush_interval_s=0.01)
    yield pg
    pg.close()


def test_events_round_trip_in_append_order_with_seq(store):
    first = store.append(event("a", EventKind.CALL_STARTED, 0.0, stage=Stage.TELEPHONY))
    store.append(event("b", EventKind.CALL_STARTED, 0.1))
    second = store.append(
        event(
            "a",
            EventKind.TRANSCRIPT_FINAL,
            1.0,
            stage=Stage.STT,
            provider="deepgram",
            model="nova-3",
            latency_s=0.25,
            outcome="ok",
            data={"confidence": 0.9, "nested": {"k": [1, 2.5, None]}},
            pii={"text": "book me in"},
        )
    )
    assert (first.seq, second.seq) == (0, 1)
    assert store.events("a") == [first, second]
    assert store.fetch("SELECT value FROM meta WHERE key = ?", ("schema_version",)) == [
        (str(SCHEMA_VERSION),)
    ]


def test_calls_newest_first_filtered_by_outcome_last_save_wins(store):
    store.save_call(CallRecord("a", "clinic", 1.0, 2.0, "completed", data={"booking_id": "b1"}))
    store.save_call(CallRecord("b", "clinic", 3.0, 4.0, "failed", error="boom"))
    store.save_call(CallRecord("b", "clinic", 3.0, 5.0, "failed", error="boom2"))
    assert [c.call_id for c in store.calls()] == ["b", "a"]
    assert store.calls(outcome="completed")[0].data == {"booking_id": "b1"}
    assert store.call("b").error == "boom2"
    assert store.call("zzz") is None


def test_calls_by_call_sid_finds_a_call_older_than_the_limit(store):
    """The SID filter applies in SQL, before LIMIT, as in the SQLite store."""
    store.save_call(CallRecord("old", "clinic", 1.0, 2.0, "completed", call_sid="CA_OLD"))
    for k in range(5):
        store.save_call(CallRecord(f"new{k}", "clinic", 10.0 + k, None, None, call_sid=f"CA{k}"))
    assert [c.call_id for c in store.calls(limit=2, call_sid="CA_OLD")] == ["old"]
    with pytest.raises(ValueError):
        store.calls(limit=-1)


def test_reopened_store_continues_the_sequence_of_an_open_call(postgres_url):
    first = PostgresEventStore(postgres_url)
    first.save_call(CallRecord("open", "clinic", 1.0))
    first.append(event("open", EventKind.CALL_STARTED, 0.0))
    first.close()
    second = PostgresEventStore(postgres_url)
    assert second.append(event("open", EventKind.CALL_ENDED, 1.0)).seq == 1
    assert [e.kind for e in second.events("open")] == [EventKind.CALL_STARTED, EventKind.CALL_ENDED]
    second.close()


def test_concurrent_appends_keep_per_call_sequences(store):
    def writer(call_id: str) -> None:
        for i in range(100):
            store.append(event(call_id, EventKind.MARK_PLAYED, float(i)))

    threads = [threading.Thread(target=writer, args=(f"c{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        assert [e.seq for e in store.events(f"c{n}")] == list(range(100))


def test_values_jsonb_refuses_are_cleaned_not_dropped(store):
    """NaN and NUL characters would make the server refuse the whole batch."""
    store.append(event("x", EventKind.CALL_STARTED, 0.0, data={"v": float("nan"), "s": "a\x00b"}))
    store.append(event("x", EventKind.CALL_ENDED, 1.0))
    got = store.events("x")
    assert got[0].data == {"v": None, "s": "ab"}
    assert len(got) == 2
    assert json_text({"a": [float("inf")]}) == '{"a": [null]}'


def test_same_rows_as_sqlite(store, tmp_path):
    """Both stores return equal events and call rows for the same appends."""
    lite = SQLiteEventStore(tmp_path / "e.sqlite3")
    for s in (store, lite):
        s.save_call(CallRecord("a", "clinic", 5.0, 9.0, "failed", error="x", data={"turns": 2}))
        s.append(event("a", EventKind.PROVIDER_ATTEMPTED, 1.0, stage=Stage.TTS, data={"a": 1e-05}))
    assert store.events("a") == lite.events("a")
    assert store.calls() == lite.calls()
    lite.close()


def test_unreachable_server_is_a_store_error():
    with pytest.raises(StoreError, match="cannot open the postgresql event store"):
        PostgresEventStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")


def test_bad_query_is_a_store_error(store):
    with pytest.raises(StoreError, match="event store read failed"):
        store.fetch("SELECT nope FROM events")
