"""The handoff SLA: transfers by outcome and time to the outcome, in ops, the API, the dashboard."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from voicerail.cli import main
from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import SQLiteEventStore
from voicerail.ops.handoffs import format_sla, handoff_sla
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.clock import FakeClock

NOW = 1_800_000_000.0
TRANSFERS = [  # (outcome, seconds to outcome, age in days)
    ("answered", 12.0, 1),
    ("answered", 20.0, 2),
    ("answered", 31.0, 3),
    ("no_answer", 25.0, 1),
    ("caller_hung_up", 9.0, 2),
    ("answered", 5.0, 30),  # outside a 7-day window
]


def fill(store: SQLiteEventStore) -> None:
    for n, (outcome, latency_s, age_days) in enumerate(TRANSFERS):
        store.append(
            Event(
                f"vr_{n}",
                EventKind.CALL_TRANSFERRED,
                NOW - age_days * 86400.0,
                0.0,
                stage=Stage.HANDOFF,
                latency_s=latency_s,
                outcome=outcome,
                data={"mode": "warm"},
            )
        )
    store.flush()


def test_sla_by_outcome(tmp_path) -> None:
    """Counts, answered rate and p50/p90/max per outcome within the window."""
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    fill(store)
    answer = handoff_sla(store, window_s=7 * 86400.0, now_s=NOW)
    store.close()
    assert answer["transfers"] == 5 and answer["answered_rate"] == 0.6
    first = answer["outcomes"][0]
    assert first == {
        "outcome": "answered",
        "transfers": 3,
        "p50_s": 20.0,
        "p90_s": 31.0,
        "max_s": 31.0,
    }
    assert [o["outcome"] for o in answer["outcomes"]] == ["answered", "caller_hung_up", "no_answer"]
    # Answered within 20 s of the request: 12 s and 20 s, not 31 s.
    assert answer["sla_s"] == 20.0 and answer["answered_within_sla_rate"] == 0.4
    assert format_sla(answer).splitlines()[0] == (
        "5 transfers, 60% answered by a human, 40% within 20 s of the request"
    )


def test_ops_handoffs_command(tmp_path, capsys) -> None:
    """`voicerail ops handoffs --json` answers the same as the report."""
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    fill(store)
    store.close()
    argv = ["ops", "handoffs", "--data-dir", str(tmp_path), "--now", str(NOW)]
    assert main([*argv, "--json", "--window", "20d"]) == 0
    assert json.loads(capsys.readouterr().out)["transfers"] == 5
    assert main([*argv, "--window", "40d"]) == 0
    assert "6 transfers, 67% answered by a human" in capsys.readouterr().out
    assert main([*argv, "--window", "40d", "--sla", "10"]) == 0
    assert "17% within 10 s of the request" in capsys.readouterr().out


def test_dashboard_and_api_show_the_sla(tmp_path) -> None:
    """The overview has a handoffs section; /api/ops/handoffs returns the report."""
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    fill(store)

    class NoAgent:
        name = "none"

    runtime = Runtime(
        agent=NoAgent(), stt=None, tts=None, events=store, clock=FakeClock(wall_offset_s=NOW)
    )
    client = TestClient(
        create_app(runtime, ServerSettings(operations=OperationsSettings(credentials=[])))
    )
    page = client.get("/dashboard").text
    assert '<section id="handoffs">' in page and "60.0%" in page
    assert "40.0%</span> within\n20 s of the agent's request" in page
    api = client.get("/api/ops/handoffs", params={"window": "7d"}).json()
    assert api["transfers"] == 5
    store.close()
