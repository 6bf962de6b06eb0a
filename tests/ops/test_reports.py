"""The four ops answers against a seeded event store; expected figures computed here."""

from __future__ import annotations

import random

import pytest

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.ops import reports

NOW = 1_800_000_000.0
WEEK = reports.WEEK_S


def seed(path):
    """Calls over two weeks with known failures; returns the plan used to build them."""
    rng = random.Random(7)
    store = SQLiteEventStore(path)
    plan = []
    for i in range(200):
        started = NOW - rng.uniform(0, 2 * WEEK)
        kind = rng.choices(["ok", "tts_timeout", "stt_503", "proto"], [0.7, 0.15, 0.1, 0.05])[0]
        outcome = "failed" if kind != "ok" else rng.choice(["completed", "completed", "abandoned"])
        call_id = f"c{i}"
        cost_tts, cost_stt = rng.choice([0.01, 0.02]), 0.005
        summary = {"cost_usd_by_provider": {"deepgram": cost_stt, "elevenlabs": cost_tts}}
        store.save_call(CallRecord(call_id, "clinic", started, started + 60, outcome, data=summary))

        def add(kind_, t, call_id=call_id, started=started, **kw):
            store.append(Event(call_id, kind_, started + t, t, **kw))

        add(EventKind.CALL_STARTED, 0.0, stage=Stage.TELEPHONY)
        stt_fails = kind == "stt_503"
        add(
            EventKind.PROVIDER_ATTEMPTED,
            1.0,
            stage=Stage.STT,
            provider="deepgram",
            outcome="error" if stt_fails else "ok",
            error_class="transient" if stt_fails else None,
            data={"attempt": 1, "cost_usd": cost_stt},
        )
        if kind == "proto":
            add(EventKind.PROTOCOL_ERROR, 1.5, stage=Stage.TELEPHONY, outcome="error")
        tts_fails = kind == "tts_timeout"
        add(
            EventKind.PROVIDER_ATTEMPTED,
            2.0,
            stage=Stage.TTS,
            provider="elevenlabs",
            outcome="error" if tts_fails else "ok",
            error_class="timeout" if tts_fails else None,
            data={"attempt": 1, "cost_usd": cost_tts},
        )
        if tts_fails:
            add(
                EventKind.PROVIDER_ATTEMPTED,
                3.0,
                stage=Stage.TTS,
                provider="piper",
                outcome="ok",
                data={"attempt": 2},
            )
        add(EventKind.CALL_ENDED, 60.0, stage=Stage.TELEPHONY, outcome=outcome)
        plan.append(
            {
                "id": call_id,
                "started": started,
                "kind": kind,
                "outcome": outcome,
                "cost": cost_tts + cost_stt,
            }
        )
    store.close()
    return plan


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "events.sqlite3"
    plan = seed(path)
    db = reports.connect(path)
    yield db, plan
    db.close()


def test_failures_by_provider_now_and_before(seeded):
    db, plan = seeded
    window = 3 * 24 * 3600.0
    answer = reports.failures(db, window_s=window, now_s=NOW)
    now_calls = [p for p in plan if p["started"] >= NOW - window]
    assert answer["now"]["calls"] == len(now_calls)
    assert answer["now"]["failed_calls"] == sum(p["outcome"] == "failed" for p in now_calls)
    events_now = [p for p in plan if p["started"] + 2.0 >= NOW - window and p["started"] + 2 < NOW]
    tts = next(r for r in answer["now"]["providers"] if r["provider"] == "elevenlabs")
    assert tts["first_attempts"] == len(events_now)
    assert tts["first_failed"] == sum(p["kind"] == "tts_timeout" for p in events_now)
    before = [p for p in plan if NOW - 2 * window <= p["started"] < NOW - window]
    assert answer["previous"]["calls"] == len(before)


def test_cost_per_call_and_per_converted_call_week_over_week(seeded):
    db, plan = seeded
    answer = reports.cost(db, weeks=2, now_s=NOW)
    for index, week in enumerate(answer["weeks"]):
        end = NOW - index * WEEK
        calls = [p for p in plan if end - WEEK <= p["started"] < end]
        converted = [p for p in calls if p["outcome"] == "completed"]
        total = sum(p["cost"] for p in calls)
        assert week["calls"] == len(calls)
        assert week["cost_usd"] == pytest.approx(total)
        assert week["cost_per_converted_call_usd"] == pytest.approx(total / len(converted))
        assert week["by_provider_usd"]["deepgram"] == pytest.approx(0.005 * len(calls))


def test_last_failed_marks_the_first_failing_stage(seeded):
    db, plan = seeded
    answer = reports.last_failed(db, n=10)
    failed = sorted((p for p in plan if p["outcome"] == "failed"), key=lambda p: -p["started"])
    assert [c["call_id"] for c in answer] == [p["id"] for p in failed[:10]]
    expected_stage = {"tts_timeout": "tts", "stt_503": "stt", "proto": "telephony"}
    for call, p in zip(answer, failed[:10], strict=True):
        assert call["first_failing_stage"] == expected_stage[p["kind"]]
        assert sum(e["first_failure"] for e in call["events"]) == 1


def test_halve_picks_the_smallest_set_of_causes_covering_half_the_failures(seeded):
    db, plan = seeded
    answer = reports.halve(db, window_s=2 * WEEK, now_s=NOW)
    failed = [p for p in plan if p["outcome"] == "failed"]
    counts = {k: sum(p["kind"] == k for p in failed) for k in ("tts_timeout", "stt_503", "proto")}
    assert answer["failed_calls"] == len(failed)
    top = answer["causes"][0]
    assert (top["stage"], top["provider"], top["error_class"]) == ("tts", "elevenlabs", "timeout")
    assert top["calls"] == counts["tts_timeout"]
    assert "fallback TTS provider" in top["fix"]
    covered = sum(c["calls"] for c in answer["halving_set"])
    assert covered * 2 >= len(failed)
    assert (covered - answer["halving_set"][-1]["calls"]) * 2 < len(failed)
