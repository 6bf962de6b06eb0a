"""Erasure and retention on a real PostgreSQL event store and outbox."""

from __future__ import annotations

from voicerail.cli import main
from voicerail.compliance.stores import DAY_S
from voicerail.compliance.stores_pg import apply_retention_pg, erase_phone_pg
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox_pg import PostgresOutbox
from voicerail.events.model import Event, EventKind
from voicerail.events.postgres import PostgresEventStore
from voicerail.events.store import CallRecord

ADA, BOB = "+15551230000", "+15559870000"


def fill(url: str) -> None:
    store = PostgresEventStore(url)
    for call_id, phone, started in (("vr_ada", ADA, 10 * DAY_S), ("vr_bob", BOB, 50 * DAY_S)):
        store.save_call(CallRecord(call_id=call_id, agent="a", started_at=started,
                                   call_sid=f"CA{call_id}"))  # fmt: skip
        store.append(Event(call_id, EventKind.STREAM_STARTED, started, 0.0,
                           pii={"custom_parameters": {"from": phone}}))  # fmt: skip
        store.append(Event(call_id, EventKind.TRANSCRIPT_FINAL, started, 0.0,
                           pii={"text": "hello"}))  # fmt: skip
    store.close()
    outbox = PostgresOutbox(url)
    lead = CRMWrite("k-lead", "vr_ada", WriteAction.LEAD, {"phone": ADA})
    outbox.record("vr_ada", "{}", [lead], 10 * DAY_S)
    outbox.close()


def rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute(sql).fetchall()


def test_erasure_removes_the_callers_rows_and_keeps_the_others(postgres_url):
    fill(postgres_url)
    receipt, calls, sids = erase_phone_pg("+1 555 123 0000", postgres_url)
    assert calls == {"vr_ada"} and sids == {"CAvr_ada"}
    assert receipt.removed["postgresql: events"] == 2
    assert receipt.removed["postgresql: calls"] == 1
    assert receipt.removed["postgresql: crm_outbox"] == 1
    assert rows(postgres_url, "SELECT DISTINCT call_id FROM events") == [("vr_bob",)]
    text = str(rows(postgres_url, "SELECT pii::text FROM events"))
    assert "5551230000" not in text and "5559870000" in text


def test_retention_on_postgresql(postgres_url):
    fill(postgres_url)
    receipt = apply_retention_pg({"events": 30, "transcripts": 5}, postgres_url, now=60 * DAY_S)
    assert receipt.removed["postgresql: calls"] == 1  # the 50-day-old call
    assert receipt.removed["postgresql: transcripts"] == 4  # every event is over 5 days old
    assert rows(postgres_url, "SELECT call_id FROM calls") == [("vr_bob",)]


def test_the_erase_command_takes_a_database_url(postgres_url, tmp_path, capsys):
    fill(postgres_url)
    args = ["erase", "--phone", ADA, "--data-dir", str(tmp_path), "--database-url", postgres_url]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "postgresql: events: 2" in out and "audit entry 1" in out
