"""`voicerail ops outbox`: pending, failed, dead-lettered, oldest age; SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from voicerail.cli import main
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import Outbox, SQLiteOutbox

NOW = 1_800_000_000.0


def fill(outbox: Outbox) -> None:
    writes = [CRMWrite(f"call-1:t{n}:book:0", "call-1", WriteAction.BOOKING) for n in range(4)]
    outbox.record("call-1", "{}", writes, NOW - 600.0)
    claimed = outbox.claim("r", 3, NOW - 500.0, 30.0)
    keys = sorted(e.write.idempotency_key for e in claimed)
    outbox.complete(keys[0], "r", NOW - 499.0, "crm-1")
    outbox.fail(keys[1], "r", NOW - 499.0, "503:transient", NOW + 60.0)
    outbox.fail(keys[2], "r", NOW - 499.0, "400:VALIDATION_ERROR", None)


def test_outbox_counts_in_json_and_text(tmp_path, capsys) -> None:
    """One delivered, one failed waiting to retry, one never tried, one dead-lettered."""
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    fill(outbox)
    outbox.close()
    base = ["ops", "outbox", "--data-dir", str(tmp_path), "--now", str(NOW)]
    assert main([*base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "pending": 2,
        "failed": 1,
        "dead_lettered": 1,
        "delivered": 1,
        "oldest_pending_age_s": 600.0,
        "superseded": 0,
    }
    assert main(base) == 0
    assert capsys.readouterr().out.strip() == (
        "CRM outbox: 2 pending (1 failed, waiting to retry), 1 dead-lettered, 1 delivered; "
        "oldest pending 600 s"
    )


def test_outbox_from_postgresql(postgres_url, capsys) -> None:
    """The same answer from the PostgreSQL outbox."""
    from voicerail.crm.outbox_pg import PostgresOutbox

    outbox = PostgresOutbox(postgres_url)
    fill(outbox)
    outbox.close()
    argv = ["ops", "outbox", "--database-url", postgres_url, "--now", str(NOW), "--json"]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["pending"], answer["dead_lettered"], answer["delivered"]) == (2, 1, 1)


def test_no_outbox_file_is_exit_2(tmp_path, capsys) -> None:
    """A data dir without an outbox: a one-line error and status 2."""
    assert main(["ops", "outbox", "--data-dir", str(tmp_path)]) == 2
    assert "no outbox at" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["failures", "last-failed"])
def test_other_questions_still_read_the_event_store(tmp_path, capsys, command) -> None:
    """Only `outbox` reads the outbox file."""
    SQLiteOutbox(tmp_path / "outbox.sqlite3").close()
    assert main(["ops", command, "--data-dir", str(tmp_path)]) == 2
    assert "no event store at" in capsys.readouterr().err
