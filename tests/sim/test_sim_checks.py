"""Per-call checks and the cross-session contamination check, on synthetic records."""

from __future__ import annotations

from typing import Any

from voicerail.sim.caller import CallResult, TurnTiming
from voicerail.sim.checks import (
    check_call,
    find_contamination,
    inbound_lags_ms,
    runtime_shares_ms,
)
from voicerail.sim.scenario import expand, parse_suite

GREETING = "Hello, you're talking to an AI assistant, and this call may be recorded."


def plans(expect: dict[str, Any] | None = None, calls: int = 1) -> list[Any]:
    raw = {
        "variables": {"name": ["Ann Lee", "Bob Moe", "Cy Ray"]},
        "scenarios": [
            {
                "name": "s",
                "token": "{name}",
                "turns": [{"say": "I am {name}"}],
                "expect": expect or {},
            }
        ],
    }
    return expand(parse_suite(raw), calls=calls)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "data": fields.pop("data", {}), "pii": fields.pop("pii", {}), **fields}


def record(agent: list[str], heard: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    events = [event("DialogDecided", pii={"agent_text": text}, latency_s=0.01) for text in agent]
    events += [event("TranscriptFinal", pii={"text": text}) for text in heard]
    return {"call_id": "vr_1", "outcome": "completed", "data": {}, "events": events, **extra}


def result(latencies_s: list[float | None] = (0.5,)) -> CallResult:  # type: ignore[assignment]
    res = CallResult(call_sid="CA1", stream_sid="MZ1")
    for latency in latencies_s:
        timing = TurnTiming(label="t", started_at=10.0, ended_at=11.0, speech_ended_at=11.0)
        timing.first_audible_at = None if latency is None else 11.0 + latency
        res.turns.append(timing)
    return res


def test_a_call_meeting_every_expectation_passes() -> None:
    """Outcome, phrases, disclosure and latency all as expected: no failure."""
    plan = plans(
        {
            "outcome": "completed",
            "disclosure": True,
            "must_say": ["thanks"],
            "must_not_say": ["human"],
            "max_turn_latency_ms": 900,
        }
    )[0]
    check = check_call(plan, result([0.5]), record([GREETING, "Thanks, bye."]))
    assert check.passed, check.failures
    assert check.latencies_ms == [500.0]


def test_each_broken_expectation_is_reported() -> None:
    """Wrong outcome, missing phrase, forbidden phrase, slow turn, no handoff are all failures."""
    plan = plans(
        {
            "outcome": "handoff",
            "must_say": ["confirmation number"],
            "must_not_say": ["I am a human"],
            "handoff": True,
            "max_turn_latency_ms": 300,
        }
    )[0]
    check = check_call(plan, result([0.5]), record([GREETING, "I am a human, really."]))
    failed = {name for name, _ in check.failures}
    assert failed == {"outcome", "must_say", "must_not_say", "handoff", "latency"}


def test_disclosure_cut_by_a_barge_in_is_not_heard() -> None:
    """If the caller barged in before the disclosure, the disclosure check fails."""
    plan = plans({"disclosure": True})[0]
    server = record([GREETING, "Sure."])
    server["events"].insert(1, event("BargeIn", pii={"heard_text": "Hello, you're"}))
    check = check_call(plan, result(), server)
    assert [name for name, _ in check.failures] == ["disclosure"]


def test_booking_fields_are_compared_after_normalization() -> None:
    """'3 pm' matches the agent's '3 PM' and 'tuesday' its 'Tuesday, November 24'."""
    plan = plans({"booking": {"name": "{name}", "day": "tuesday", "time": "3 pm"}})[0]
    server = record([GREETING])
    server["events"].append(
        event(
            "DialogDecided",
            data={"action": "book_appointment"},
            pii={
                "agent_text": "Booked.",
                "name": plan.token,
                "day": "Tuesday, November 24",
                "time": "3 PM",
            },
        )
    )
    assert check_call(plan, result(), server).passed
    server["events"][-1]["pii"]["time"] = "4 PM"
    failures = check_call(plan, result(), server).failures
    assert failures == [("booking", "booking time: expected '3 pm', got '4 PM'")]


def test_caller_side_problems_fail_the_call() -> None:
    """No reply, audio gaps and protocol errors seen by the caller are failures."""
    res = result([None, 0.4])
    res.audio_gaps_s.append(0.06)
    res.protocol_errors.append("unknown event 'bogus'")
    check = check_call(plans()[0], res, record([GREETING]))
    assert {name for name, _ in check.failures} == {"reply", "audio_gap", "protocol"}


def test_a_call_the_server_never_recorded_fails_unless_it_has_no_api() -> None:
    """Missing server records fail the call; for targets without the API they are unchecked."""
    plan = plans({"outcome": "completed"})[0]
    assert [n for n, _ in check_call(plan, result(), None).failures] == ["server_record"]
    check = check_call(plan, result(), None, server_has_api=False)
    assert check.passed and check.unchecked == ["outcome"]


def test_contamination_finds_a_token_in_another_calls_agent_speech() -> None:
    """Caller 0's name spoken to caller 1 is cross-session contamination."""
    p = plans(calls=2)
    own0 = record([GREETING, f"Thanks {p[0].token}."], heard=[f"I am {p[0].token}"])
    leak = record([f"{GREETING} Last time you said {p[0].token}."], heard=[f"I am {p[1].token}"])
    report = find_contamination([(p[0], own0, []), (p[1], leak, [])])
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert (finding.owner, finding.found_in, finding.where) == (0, 1, "agent speech")
    assert report.own_tokens_seen == 2 and report.spoken_tokens == 2


def test_contamination_sees_sim_tokens_and_stored_records() -> None:
    """A caller's sim token in another call's events, or its name in another's booking, leaks."""
    p = plans(calls=2)
    clean = record([GREETING])
    events_leak = record([GREETING], custom={"sim_token": p[0].sim_token})
    report = find_contamination([(p[0], clean, []), (p[1], events_leak, [])])
    assert [(f.owner, f.where) for f in report.findings] == [(0, "events")]
    rows = [{"call_id": "vr_1", "name": p[0].token}]
    report = find_contamination([(p[0], clean, []), (p[1], clean, rows)])
    assert [(f.owner, f.found_in, f.where) for f in report.findings] == [(0, 1, "stored records")]


def test_clean_calls_have_no_contamination() -> None:
    """Each call holding only its own tokens passes."""
    p = plans(calls=3)
    entries = [(plan, record([f"Hi {plan.token}"]), []) for plan in p]
    assert find_contamination(entries).findings == []


def test_runtime_share_subtracts_provider_time() -> None:
    """Runtime share = time to first audio minus STT wait, dialog and TTS first byte."""
    events = [
        event("UserTurnEnded"),
        event("TranscriptFinal", data={"wait_after_turn_end_s": 0.1}),
        event("DialogDecided", latency_s=0.3),
        event("TTSFirstAudio", latency_s=0.15, data={"since_turn_end_s": 0.553}),
        event("TTSFirstAudio", latency_s=0.15, data={"since_turn_end_s": None}),
    ]
    (share,) = runtime_shares_ms(events)
    assert abs(share - 3.0) < 1e-6


def test_inbound_lag_is_detection_time_minus_the_audio_clock() -> None:
    """A turn whose audio ended 10.0 s into the stream, with a 0.5 s endpointing
    window, is due at start + 10.5 s; seen 40 ms later, then 2.5 s later."""
    events = [
        event("StreamStarted", at_mono=100.0),
        event("UserTurnEnded", data={"speech_end_s": 10.0, "endpoint_wait_s": 0.5}, at_mono=110.54),
        event("UserTurnEnded", data={"speech_end_s": 20.0, "endpoint_wait_s": 0.5}, at_mono=123.0),
    ]
    lags = inbound_lags_ms(events)
    assert [round(ms) for ms in lags] == [40, 2500]
    assert inbound_lags_ms(events[1:]) == []  # no stream start: nothing to measure against
