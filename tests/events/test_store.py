"""The SQLite event store: ordering, round trip, reopen, call rows."""

import threading

import pytest

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import CallRecord, SQLiteEventStore


def event(call_id: str, kind: EventKind, t: float, **kw) -> Event:
    return Event(call_id=call_id, kind=kind, at_wall=1000.0 + t, at_mono=t, **kw)


def test_events_round_trip_in_append_order_with_seq(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    first = store.append(event("a", EventKind.CALL_STARTED, 0.0, stage=Stage.TELEPHONY))
    store.append(event("b", EventKind.CALL_STARTED, 0.1))
    second = store.append(
        event(
            "a",
            EventKind.TRANSCRIPT_FINAL,
            1.0,
            stage=Stage.STT,
            provider="faster-whisper",
            latency_s=0.7,
            data={"confidence": 0.9},
            pii={"text": "book me in"},
        )
    )
    assert (first.seq, second.seq) == (0, 1)
    got = store.events("a")
    assert [e.kind for e in got] == [EventKind.CALL_STARTED, EventKind.TRANSCRIPT_FINAL]
    assert got[1] == second
    store.close()


def test_reopened_store_continues_sequence(tmp_path):
    path = tmp_path / "e.sqlite3"
    store = SQLiteEventStore(path)
    store.append(event("a", EventKind.CALL_STARTED, 0.0))
    store.close()
    store = SQLiteEventStore(path)
    assert store.append(event("a", EventKind.CALL_ENDED, 1.0)).seq == 1
    assert len(store.events("a")) == 2
    store.close()


def test_calls_newest_first_filtered_by_outcome(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    store.save_call(CallRecord("a", "clinic", 1.0, 2.0, "completed", data={"booking_id": "b1"}))
    store.save_call(CallRecord("b", "clinic", 3.0, 4.0, "failed", error="boom"))
    store.save_call(CallRecord("b", "clinic", 3.0, 5.0, "failed", error="boom2"))
    assert [c.call_id for c in store.calls()] == ["b", "a"]
    assert store.calls(outcome="completed")[0].data == {"booking_id": "b1"}
    assert store.call("b").error == "boom2"
    assert store.call("zzz") is None
    store.close()


def test_calls_by_call_sid_finds_a_call_older_than_the_limit(tmp_path):
    """The SID filter applies in SQL, before LIMIT (issue 11: `voicerail call` after 500 calls)."""
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    store.save_call(CallRecord("old", "clinic", 1.0, 2.0, "completed", call_sid="CA_OLD"))
    for k in range(5):
        store.save_call(CallRecord(f"new{k}", "clinic", 10.0 + k, None, None, call_sid=f"CA{k}"))
    assert [c.call_id for c in store.calls(limit=2, call_sid="CA_OLD")] == ["old"]
    assert store.calls(limit=2, call_sid="CA_OLD", outcome="failed") == []
    store.close()


@pytest.mark.parametrize("limit", [0, -1, 1001, 9223372036854775808])
def test_calls_rejects_an_unbounded_limit(tmp_path, limit):
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    with pytest.raises(ValueError, match=f"limit must be from 1 to 1000, got {limit}"):
        store.calls(limit=limit)
    store.close()


def test_concurrent_appends_keep_per_call_sequences(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.sqlite3", flush_interval_s=0.001)

    def writer(call_id: str) -> None:
        for i in range(200):
            store.append(event(call_id, EventKind.MARK_PLAYED, float(i)))

    threads = [threading.Thread(target=writer, args=(f"c{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        got = store.events(f"c{n}")
        assert [e.seq for e in got] == list(range(200))
        assert [e.at_mono for e in got] == [float(i) for i in range(200)]
    store.close()


def test_redacted_dict_hides_pii_values():
    e = event("a", EventKind.DTMF_RECEIVED, 0.0, pii={"digit": "4"})
    assert e.to_dict(redact=True)["pii"] == {"digit": "[redacted]"}
    assert Event.from_dict(e.to_dict()) == e
