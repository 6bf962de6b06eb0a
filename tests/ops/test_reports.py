"""The four ops answers against a seeded event store, on SQLite and on PostgreSQL.

Expected figures are computed here from the generator's plans (what each call
did), never from the events or the queries under test.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.postgres import PostgresEventStore
from voicerail.events.store import SQLiteEventStore
from voicerail.ops import reports
from voicerail.testing.call_generator import PlannedCall, plan_calls, store_calls
from voicerail.testing.postgres import temporary_database

NOW = 1_800_000_000.0
DAY = 86400.0
WEEK = reports.WEEK_S
PLANS = list(plan_calls(7, 500, start_s=NOW - 2 * WEEK - DAY, end_s=NOW))

# Each failing scenario's cause: (stage, provider, error class); None: unexplained.
CAUSES = {
    "tts_failed": ("tts", "elevenlabs", "timeout"),
    "stt_failed": ("stt", "deepgram", "transient"),
    "llm_failed": ("llm", "openai", "permanent"),
    "recovered_then_llm_failed": ("llm", "openai", "permanent"),
    "protocol_error": ("telephony", None, None),
    "unexplained": None,
}


# Calls refused beyond capacity, seconds before NOW: 3 in the last day, 2 the day before.
REFUSED_AGO_S = [10.0, 3600.0, DAY - 1, DAY + 5, 2 * DAY - 5]


def fill(store) -> None:
    store_calls(store, PLANS)
    for i, ago in enumerate(REFUSED_AGO_S):
        store.append(
            Event(
                call_id=f"refused_CA{i}",
                kind=EventKind.CALL_REFUSED,
                at_wall=NOW - ago,
                at_mono=0.0,
                stage=Stage.TELEPHONY,
                outcome="refused",
                data={"where": "webhook", "reason": "full: 10 of 10 calls"},
            )
        )
    store.flush()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    store = SQLiteEventStore(tmp_path_factory.mktemp("ops") / "events.sqlite3")
    fill(store)
    yield store
    store.close()


@pytest.fixture(scope="module")
def postgres_store(postgres_server):
    with temporary_database(postgres_server) as url:
        store = PostgresEventStore(url)
        fill(store)
        yield store
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    return request.getfixturevalue(f"{request.param}_store")


def started_in(start: float, end: float) -> list[PlannedCall]:
    return [p for p in PLANS if start <= p.started_at < end]


def expected_window(start: float, end: float) -> dict:
    calls = started_in(start, end)
    rows: dict[tuple[str, str], Counter] = defaultdict(Counter)
    call_ids: dict[tuple[str, str], set] = defaultdict(set)
    for p in PLANS:
        for a in p.attempts:
            if a.outcome not in ("ok", "error") or not start <= p.started_at + a.t_s < end:
                continue
            key = (a.stage, a.provider)
            rows[key]["attempts"] += 1
            rows[key]["failed"] += a.outcome == "error"
            rows[key]["first_attempts"] += a.number == 1
            rows[key]["first_failed"] += a.number == 1 and a.outcome == "error"
            call_ids[key].add(p.call_id)
    blamed = Counter(
        CAUSES[p.scenario][:2] for p in calls if p.outcome == "failed" and CAUSES[p.scenario]
    )
    return {
        "calls": len(calls),
        "failed_calls": sum(p.outcome == "failed" for p in calls),
        "providers": {
            key: {**counts, "calls": len(call_ids[key]), "failed_calls": blamed[key]}
            for key, counts in rows.items()
        },
    }


def test_failures_by_provider_and_stage_now_and_before(db):
    answer = reports.failures(db, window_s=DAY, now_s=NOW)
    for label, (start, end) in {
        "now": (NOW - DAY, NOW),
        "previous": (NOW - 2 * DAY, NOW - DAY),
    }.items():
        expected = expected_window(start, end)
        got = answer[label]
        assert (got["calls"], got["failed_calls"]) == (expected["calls"], expected["failed_calls"])
        assert got["refused_calls"] == sum(start <= NOW - ago < end for ago in REFUSED_AGO_S)
        assert got["call_failure_rate"] == pytest.approx(
            expected["failed_calls"] / expected["calls"]
        )
        by_key = {(p["stage"], p["provider"]): p for p in got["providers"]}
        assert set(by_key) == set(expected["providers"])
        for key, want in expected["providers"].items():
            row = by_key[key]
            for field in ("attempts", "failed", "first_attempts", "first_failed", "calls"):
                assert row[field] == want[field], (label, key, field)
            assert row["failed_calls"] == want["failed_calls"], (label, key)
            first = want["first_attempts"]
            rate = want["first_failed"] / first if first else 0.0
            assert row["first_attempt_failure_rate"] == pytest.approx(rate)
    tts = next(p for p in answer["now"]["providers"] if p["provider"] == "elevenlabs")
    assert tts["previous_first_attempt_failure_rate"] == pytest.approx(
        next(p for p in answer["previous"]["providers"] if p["provider"] == "elevenlabs")[
            "first_attempt_failure_rate"
        ]
    )


def test_cost_per_call_and_per_converted_call_week_over_week(db):
    answer = reports.cost(db, weeks=2, now_s=NOW)
    assert len(answer["weeks"]) == 2
    for index, week in enumerate(answer["weeks"]):
        end = NOW - index * WEEK
        calls = started_in(end - WEEK, end)
        converted = [p for p in calls if p.outcome == "completed"]
        total = sum(p.cost_usd for p in calls)
        by_provider: Counter = Counter()
        for p in calls:
            for a in p.attempts:
                by_provider[a.provider] += a.cost_usd or 0.0
        assert (week["calls"], week["converted_calls"]) == (len(calls), len(converted))
        assert week["cost_usd"] == pytest.approx(total, abs=1e-8)
        assert week["cost_per_call_usd"] == pytest.approx(total / len(calls))
        assert week["cost_per_converted_call_usd"] == pytest.approx(total / len(converted))
        got = {p["provider"]: p["cost_usd"] for p in week["by_provider"]}
        assert got == pytest.approx(dict(by_provider), abs=1e-8)
    this, last = answer["weeks"]
    assert this["change_per_converted_call"] == pytest.approx(
        this["cost_per_converted_call_usd"] / last["cost_per_converted_call_usd"] - 1
    )


def test_last_failed_marks_the_first_unrecovered_failure(db):
    answer = reports.last_failed(db, n=10)
    failed = sorted((p for p in PLANS if p.outcome == "failed"), key=lambda p: -p.started_at)
    assert [c["call_id"] for c in answer] == [p.call_id for p in failed[:10]]
    for call, plan in zip(answer, failed[:10], strict=True):
        cause = CAUSES[plan.scenario]
        marked = [e for e in call["events"] if e["first_failure"]]
        if cause is None:
            assert call["first_failing_stage"] is None and not marked
            continue
        assert call["first_failing_stage"] == cause[0]
        [event] = marked
        assert (event["stage"], event["provider"], event["error_class"]) == cause
        assert all("pii" not in e for e in call["events"])


def test_halve_ranks_causes_and_picks_the_smallest_halving_set(db):
    answer = reports.halve(db, window_s=3 * WEEK, now_s=NOW)
    failed = [p for p in PLANS if p.outcome == "failed"]
    counts = Counter(CAUSES[p.scenario] for p in failed)
    assert answer["failed_calls"] == len(failed)
    assert answer["calls"] == len(PLANS)
    got = {(c["stage"], c["provider"], c["error_class"]): c["calls"] for c in answer["causes"]}
    want = {(k or (None, None, None)): v for k, v in counts.items()}
    assert got == want
    ranked = sorted(counts.values(), reverse=True)
    assert [c["calls"] for c in answer["causes"]] == ranked
    needed, covered = 0, 0
    while covered * 2 < len(failed):
        covered += ranked[needed]
        needed += 1
    assert len(answer["halving_set"]) == needed
    assert answer["failure_rate_after"] == pytest.approx((len(failed) - covered) / len(PLANS))
    fixes = {(c["stage"], c["provider"]): c["fix"] for c in answer["causes"]}
    assert "add a fallback TTS provider after elevenlabs" in fixes[("tts", "elevenlabs")]
    assert "credentials" in fixes[("llm", "openai")]
    assert answer["causes"][0]["config_change"]


def test_postgresql_and_sqlite_give_identical_answers(sqlite_store, postgres_store):
    def answers(db):
        return json.dumps(
            {
                "failures": reports.failures(db, window_s=DAY, now_s=NOW),
                "failures_15m": reports.failures(db, window_s=900, now_s=NOW),
                "cost": reports.cost(db, weeks=3, now_s=NOW),
                "last_failed": reports.last_failed(db, n=10),
                "halve": reports.halve(db, window_s=WEEK, now_s=NOW),
                "health": reports.provider_health(db, window_s=DAY, now_s=NOW),
            },
            sort_keys=True,
        )

    assert answers(sqlite_store) == answers(postgres_store)


def test_empty_store_answers_zeros(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    assert reports.failures(store, window_s=900, now_s=NOW)["now"]["calls"] == 0
    week = reports.cost(store, weeks=1, now_s=NOW)["weeks"][0]
    assert week["cost_per_converted_call_usd"] is None and week["cost_usd"] == 0
    assert reports.last_failed(store, n=10) == []
    halve = reports.halve(store, window_s=WEEK, now_s=NOW)
    assert halve["causes"] == [] and halve["failure_rate"] == 0.0
    store.close()


def test_parse_duration():
    assert reports.parse_duration("15m") == 900.0
    assert reports.parse_duration("2h") == 7200.0
    assert reports.parse_duration("1.5d") == 1.5 * DAY
    for bad in ("soon", "0m", "15", "-1h"):
        with pytest.raises(ValueError, match="expected a duration"):
            reports.parse_duration(bad)
