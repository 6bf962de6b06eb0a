"""The stores keep per-call, per-provider costs from ``data.cost_usd``, and rebuild them."""

from __future__ import annotations

import sqlite3

import pytest

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.postgres import PostgresEventStore, PostgresReader
from voicerail.events.store import SQLiteEventStore, attempt_costs, event_row, open_event_store


def attempt(call_id: str, provider: str, cost: object, seq: int = 0) -> Event:
    return Event(
        call_id,
        EventKind.PROVIDER_ATTEMPTED,
        1000.0 + seq,
        float(seq),
        Stage.TTS,
        provider=provider,
        outcome="ok",
        data={"attempt": 1, "cost_usd": cost},
        seq=seq,
    )


def costs(store) -> dict:
    rows = store.fetch("SELECT call_id, provider, cost_usd, priced_attempts FROM call_costs")
    return {(r[0], r[1]): (round(r[2], 9), r[3]) for r in rows}


def test_only_numeric_costs_of_attempts_count():
    events = [
        attempt("a", "piper", 0.5),
        attempt("a", "piper", 0.25),
        attempt("a", "espeak", 1),
        attempt("a", "piper", "0.5"),
        attempt("a", "piper", True),
        attempt("a", "piper", float("nan")),
        Event("a", EventKind.MARK_PLAYED, 1.0, 1.0, data={"cost_usd": 9.0}),
    ]
    assert attempt_costs(events) == [("a", "piper", 0.75, 2), ("a", "espeak", 1.0, 1)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_appends_keep_the_rollup(backend, tmp_path, request):
    if backend == "sqlite":
        store = open_event_store(tmp_path)
    else:
        store = open_event_store(tmp_path, request.getfixturevalue("postgres_url"))
    for i, (call, provider, cost) in enumerate([("a", "piper", 0.5), ("a", "piper", 0.25),
                                                ("b", "deepgram", 0.125)]):  # fmt: skip
        store.append(attempt(call, provider, cost, seq=i))
    assert costs(store) == {("a", "piper"): (0.75, 2), ("b", "deepgram"): (0.125, 1)}
    store.close()


def test_a_database_without_the_rollup_is_backfilled_when_opened(tmp_path):
    path = tmp_path / "events.sqlite3"
    SQLiteEventStore(path).close()
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [event_row(attempt("a", "piper", 0.5, 0)), event_row(attempt("a", "piper", 0.5, 1))],
    )
    db.execute("DELETE FROM meta WHERE key = 'costs_version'")
    db.commit()
    db.close()
    store = SQLiteEventStore(path)
    assert costs(store) == {("a", "piper"): (1.0, 2)}
    store.close()


def test_postgres_rebuild_and_read_only_reader(postgres_url):
    store = PostgresEventStore(postgres_url)
    store.append(attempt("a", "piper", 0.5))
    store.flush()
    store.fetch("SELECT 1")
    store.rebuild_costs()
    assert costs(store) == {("a", "piper"): (0.5, 1)}
    store.close()
    reader = PostgresReader(postgres_url)
    assert reader.fetch("SELECT COUNT(*) FROM events WHERE kind = ?", ("ProviderAttempted",)) == [
        (1,)
    ]
    reader.close()
