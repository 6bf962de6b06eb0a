"""`voicerail ops` prints each answer as JSON and refuses a bad window."""

import json

import pytest

from voicerail.cli import main
from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.ops.cli import parse_duration


def test_ops_commands_answer_from_the_data_dir(tmp_path, capsys):
    import time

    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    now = time.time()
    store.save_call(CallRecord("c1", "clinic", now - 60, now - 30, "failed", error="boom"))
    store.append(
        Event(
            "c1",
            EventKind.PROVIDER_ATTEMPTED,
            now - 50,
            1.0,
            stage=Stage.TTS,
            provider="piper",
            outcome="error",
            error_class="timeout",
            data={"attempt": 1},
        )
    )
    store.close()
    assert main(["ops", "halve", "--data-dir", str(tmp_path), "--json"]) == 0
    halve = json.loads(capsys.readouterr().out)
    assert halve["failed_calls"] == 1 and halve["halving_set"][0]["provider"] == "piper"
    assert main(["ops", "last-failed", "--data-dir", str(tmp_path), "--json"]) == 0
    [call] = json.loads(capsys.readouterr().out)
    assert call["first_failing_stage"] == "tts"
    assert main(["ops", "failures", "--window", "1h", "--data-dir", str(tmp_path)]) == 0
    assert "1/1 calls failed" in capsys.readouterr().out


def test_missing_store_and_bad_durations(tmp_path, capsys):
    assert main(["ops", "cost", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no event store" in capsys.readouterr().err
    assert parse_duration("15m") == 900.0 and parse_duration("2h") == 7200.0
    with pytest.raises(SystemExit):
        main(["ops", "failures", "--window", "soon"])
