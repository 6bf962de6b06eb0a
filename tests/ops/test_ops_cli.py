"""`voicerail ops` answers each question in text and JSON, from SQLite or PostgreSQL."""

from __future__ import annotations

import json

import pytest

from voicerail.cli import main
from voicerail.events.postgres import PostgresEventStore
from voicerail.events.store import SQLiteEventStore
from voicerail.ops import reports
from voicerail.ops.cli import parse_duration
from voicerail.testing.call_generator import events_for, plan_calls, store_calls

NOW = 1_800_000_000.0
PLANS = list(plan_calls(11, 120, start_s=NOW - 14 * 86400.0, end_s=NOW))


def fill(store) -> None:
    store_calls(store, PLANS)
    store.close()


@pytest.fixture
def data_dir(tmp_path):
    fill(SQLiteEventStore(tmp_path / "events.sqlite3"))
    return tmp_path


def run_json(capsys, *argv: str):
    assert main(["ops", *argv, "--json", "--now", str(NOW)]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_question_in_json_matches_the_report(data_dir, capsys):
    store = SQLiteEventStore(data_dir / "events.sqlite3")
    where = ["--data-dir", str(data_dir)]
    assert run_json(capsys, "failures", "--window", "1d", *where) == json.loads(
        json.dumps(reports.failures(store, window_s=86400.0, now_s=NOW))
    )
    assert run_json(capsys, "cost", "--weeks", "2", *where) == json.loads(
        json.dumps(reports.cost(store, weeks=2, now_s=NOW))
    )
    last = run_json(capsys, "last-failed", "-n", "3", *where)
    assert [c["call_id"] for c in last] == [c["call_id"] for c in reports.last_failed(store, n=3)]
    halve = run_json(capsys, "halve", *where)
    assert halve["failed_calls"] == sum(
        p.outcome == "failed" and p.started_at >= NOW - 7 * 86400.0 for p in PLANS
    )
    store.close()


def test_each_question_in_text(data_dir, capsys):
    where = ["--data-dir", str(data_dir), "--now", str(NOW)]
    assert main(["ops", "failures", "--window", "1d", *where]) == 0
    out = capsys.readouterr().out
    assert "calls failed" in out and "elevenlabs" in out and "first-attempt" in out
    assert main(["ops", "cost", *where]) == 0
    assert "$/converted" in capsys.readouterr().out
    assert main(["ops", "last-failed", "-n", "2", *where]) == 0
    assert "first failing stage" in capsys.readouterr().out
    assert main(["ops", "halve", "--window", "14d", *where]) == 0
    out = capsys.readouterr().out
    assert "removing these causes leaves" in out and "change:" in out


def test_postgresql_through_database_url(postgres_url, capsys):
    fill(PostgresEventStore(postgres_url))
    answer = run_json(capsys, "halve", "--window", "14d", "--database-url", postgres_url)
    assert answer["failed_calls"] == sum(p.outcome == "failed" for p in PLANS)


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_rebuild_rollups_restores_answers_after_the_rollups_were_emptied(
    where, data_dir, request, capsys
):
    """`voicerail ops rebuild-rollups` recomputes emptied rollups from the events."""
    if where == "sqlite":
        store, argv = SQLiteEventStore(data_dir / "events.sqlite3"), ["--data-dir", str(data_dir)]
    else:
        url = request.getfixturevalue("postgres_url")
        fill(PostgresEventStore(url))
        store, argv = PostgresEventStore(url), ["--database-url", url]
    expected = reports.halve(store, window_s=14 * 86400.0, now_s=NOW)
    for table in ("rollup_calls", "rollup_causes", "call_causes"):
        store.fetch(f"DELETE FROM {table} RETURNING 1")
    assert reports.halve(store, window_s=14 * 86400.0, now_s=NOW) != expected
    store.close()
    assert main(["ops", "rebuild-rollups", "--json", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == sum(
        len(events_for(p)[1]) for p in PLANS
    )
    assert run_json(capsys, "halve", "--window", "14d", *argv) == expected
    assert main(["ops", "rebuild-rollups", "--data-dir", str(data_dir / "none")]) == 2


def test_missing_store_and_bad_durations(tmp_path, capsys):
    assert main(["ops", "cost", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no event store" in capsys.readouterr().err
    assert parse_duration("15m") == 900.0 and parse_duration("2h") == 7200.0
    with pytest.raises(SystemExit):
        main(["ops", "failures", "--window", "soon"])


def test_credentials_lists_expiry_and_exits_1_when_one_needs_attention(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-secret-value")
    monkeypatch.setenv("CRM_TOKEN", "crm-secret-value")
    path = tmp_path / "credentials.yaml"
    path.write_text(
        "credentials:\n"
        "  deepgram: {env: DEEPGRAM_API_KEY, expires: '2027-01-20'}\n"
        "  crm: {env: CRM_TOKEN, kind: crm_token, expires: '2028-01-01'}\n"
    )
    jan_15_2026 = 1768435200.0
    argv = ["ops", "credentials", "--credentials", str(path), "--json", "--now"]
    assert main([*argv, str(jan_15_2026)]) == 0  # a year and more left
    capsys.readouterr()
    later = jan_15_2026 + 360 * 86400  # 2027-01-10: deepgram has 10 days left
    assert main([*argv, str(later)]) == 1
    body = json.loads(capsys.readouterr().out)
    states = {c["name"]: (c["state"], round(c["days_left"])) for c in body["credentials"]}
    assert states["deepgram"] == ("expiring", 10)
    assert states["crm"] == ("unchecked", 356)
    assert main([*argv[:-2], "--now", str(later)]) == 1
    out = capsys.readouterr().out
    assert "expiring" in out and "secret-value" not in out
