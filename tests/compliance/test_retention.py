"""Retention per data class, and `voicerail ops retention` saying what it removed."""

from __future__ import annotations

import json
import sqlite3

import pytest

from voicerail.cli import main
from voicerail.compliance.audit import AuditLog
from voicerail.compliance.policy import deployment_compliance
from voicerail.compliance.stores import DAY_S, apply_retention
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.errors import ConfigError
from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore

NOW = 100 * DAY_S


def fill(tmp_path) -> None:
    """Calls 40, 10 and 1 days old, each with a transcript; an old delivered CRM write."""
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    for age_days in (40, 10, 1):
        at = NOW - age_days * DAY_S
        call_id = f"vr_{age_days}"
        store.save_call(CallRecord(call_id=call_id, agent="a", started_at=at))
        store.append(Event(call_id, EventKind.TRANSCRIPT_FINAL, at, 0.0, pii={"text": "hi Ada"}))
    store.close()
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    write = CRMWrite("k1", "vr_40", WriteAction.DISPOSITION, {"disposition": "completed"})
    outbox.record("vr_40", "{}", [write], NOW - 40 * DAY_S)
    outbox.close()


def test_each_class_keeps_its_own_days(tmp_path):
    fill(tmp_path)
    receipt = apply_retention({"transcripts": 7, "events": 30, "crm_writes": 90}, tmp_path, now=NOW)
    assert receipt.removed["events.sqlite3: calls"] == 1  # the 40-day-old call
    assert receipt.removed["events.sqlite3: transcripts"] == 2  # 40 and 10 days old
    assert receipt.removed["outbox.sqlite3: crm writes"] == 0  # still pending: kept
    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        rows = dict(db.execute("SELECT call_id, pii FROM events"))
    assert set(rows) == {"vr_10", "vr_1"}
    assert rows["vr_10"] == "{}" and json.loads(rows["vr_1"]) == {"text": "hi Ada"}


def test_an_unset_class_is_kept(tmp_path):
    fill(tmp_path)
    assert apply_retention({}, tmp_path, now=NOW).total == 0


def test_ops_retention_reads_the_deployment_file_prints_and_audits(tmp_path, capsys):
    fill(tmp_path)
    config = tmp_path / "voicerail.yaml"
    config.write_text(
        "providers: {}\ncompliance:\n  retention: {audio: 0, transcripts: 7, events: 30,"
        " crm_writes: 90}\n"
    )
    args = ["ops", "retention", "--data-dir", str(tmp_path), "--config", str(config)]
    assert main([*args, "--now", str(NOW)]) == 0
    out = capsys.readouterr().out
    assert "retention: 4 rows removed" in out and "events.sqlite3: calls: 1" in out
    [entry] = AuditLog(tmp_path / "audit.sqlite3").entries()
    assert entry.action == "retention" and entry.detail["events.sqlite3: calls"] == 1


def test_a_bad_retention_names_its_field(tmp_path):
    config = tmp_path / "voicerail.yaml"
    config.write_text("compliance:\n  retention: {transcripts: -1}\n")
    with pytest.raises(ConfigError) as err:
        deployment_compliance(config)
    assert err.value.field == "compliance.retention.transcripts"
