"""The weekly review, reviewers' labels as events and the review sheet export."""

from __future__ import annotations

import csv
import json

from voicerail.cli import main
from voicerail.compliance.audit import AuditLog
from voicerail.compliance.review import WEEK_S, render_html, weekly_review
from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.ops.cli import open_reader

NOW = 10 * WEEK_S
SUCCESS = {"book": "completed", "hours": "completed"}


def add_call(store, call_id, started, intent, outcome, latency_s=0.8, error=None):
    store.save_call(CallRecord(call_id=call_id, agent="clinic", started_at=started))
    for kind, fields in (
        (EventKind.DIALOG_DECIDED, {"data": {"intent": intent}}),
        (EventKind.TTS_FIRST_AUDIO, {"data": {"since_turn_end_s": latency_s}}),
        (EventKind.CALL_ENDED, {"outcome": outcome, "data": {"error": error}}),
    ):
        store.append(Event(call_id, kind, started, 0.0, **fields))


def fill(tmp_path) -> None:
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    week, before = NOW - WEEK_S / 2, NOW - 1.5 * WEEK_S
    add_call(store, "w1", week, "book", "completed", 0.7)
    add_call(store, "w2", week, "book", "abandoned", 0.9)
    add_call(store, "w3", week, "hours", "failed", 1.2, error="ProviderTimeout: stt")
    add_call(store, "p1", before, "book", "completed", 2.0)
    store.close()


def test_the_week_is_compared_with_the_week_before(tmp_path):
    fill(tmp_path)
    with open_reader(tmp_path, None) as db:
        review = weekly_review(db, now_s=NOW, success=SUCCESS)
    week, before = review["week"], review["previous_week"]
    assert week["calls"] == 3 and before["calls"] == 1
    assert week["completion"] == round(1 / 3, 4) and before["completion"] == 1.0
    assert week["completion_by_intent"] == {"book": 0.5, "hours": 0.0}
    assert week["completion_by_segment"] == {"clinic": round(1 / 3, 4)}
    assert sorted(week["top_failure_causes"]) == [
        ("ProviderTimeout", 1),
        ("not completed: book", 1),
    ]
    assert review["change"]["completion"] == round(1 / 3 - 1.0, 4)
    assert week["latency_ms"]["p50"] == 900.0
    assert "Weekly review" in render_html(review)


def test_labels_are_events_and_give_recognition_accuracy(tmp_path, capsys):
    fill(tmp_path)
    base = ["review", "label", "--data-dir", str(tmp_path), "--reviewer", "qa1"]
    assert main([*base, "w1", "ok"]) == 0
    assert main([*base, "w2", "misheard"]) == 0
    assert main([*base, "nope", "ok"]) == 2  # no such call
    assert main([*base, "w3", "great"]) == 2  # no such label
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    [label] = [e for e in store.events("w2") if e.kind == EventKind.REVIEW_LABELED]
    store.close()
    assert label.data == {"label": "misheard", "reviewer": "qa1"}
    with open_reader(tmp_path, None) as db:
        week = weekly_review(db, now_s=NOW, success=SUCCESS)["week"]
    assert week["labelled_calls"] == 2 and week["recognition_accuracy"] == 0.5
    actions = [e.action for e in AuditLog(tmp_path / "audit.sqlite3").entries()]
    assert actions == ["call.labeled", "call.labeled"]


def test_ops_review_writes_json_and_html(tmp_path, capsys):
    fill(tmp_path)
    out = tmp_path / "review"
    args = ["ops", "review", "--week", "--data-dir", str(tmp_path), "--now", str(NOW)]
    assert main([*args, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["week"]["calls"] == 3
    assert (out / "review.html").read_text().startswith("<!doctype html>")


def test_the_export_sheet_lists_the_sampled_calls(tmp_path, capsys):
    fill(tmp_path)
    config = tmp_path / "voicerail.yaml"
    config.write_text("compliance:\n  sampling: {percent_of_rest: 0}\n")
    sheet = tmp_path / "review.csv"
    # w2 and w3 are failed or not completed; w1 is neither and 0 % of the rest are taken
    agent = tmp_path / "agent.yaml"
    agent.write_text("compliance:\n  evaluation:\n    success: {book: completed}\n")
    code = main(["review", "export", "--csv", str(sheet), "--data-dir", str(tmp_path),
                 "--config", str(config), "--agent", str(agent), "--now", str(NOW)])  # fmt: skip
    assert code == 0
    with sheet.open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["call_id"], r["reason"]) for r in rows) == [("w2", "failed"), ("w3", "failed")]
    assert "2 of 3 calls to review" in capsys.readouterr().out
