"""Per-call evaluation from events, QA sampling and the review sheet."""

from __future__ import annotations

import csv
import io

from voicerail.compliance.evaluation import CallEvaluation, evaluate_call, review_sheet, sample
from voicerail.compliance.policy import SamplingPolicy
from voicerail.events.model import Event, EventKind


def ev(kind: EventKind, outcome: str | None = None, **data) -> Event:
    return Event("vr_1", kind, 0.0, 0.0, outcome=outcome, data=data)


def test_a_call_is_evaluated_from_its_events():
    events = [
        ev(EventKind.DISCLOSURE_GIVEN, when="start", added=False),
        ev(EventKind.CONSENT_RECORDED, mode="notice", decision="notified"),
        ev(EventKind.DIALOG_DECIDED, intent="book", decision="route"),
        ev(EventKind.TTS_FIRST_AUDIO, since_turn_end_s=0.8123),
        ev(EventKind.BARGE_IN, heard_words=3, full_words=9),
        ev(EventKind.REPROMPTED, count=1),
        ev(EventKind.DIALOG_DECIDED, intent=None, decision="not_understood"),
        ev(EventKind.GUARD_TRIGGERED, rule="claims_human", index=None),
        ev(EventKind.CALL_ENDED, outcome="completed"),
    ]
    result = evaluate_call("vr_1", events, {"book": "completed"})
    assert result.outcome == "completed" and result.intents == ["book"] and result.completed
    assert result.latency_ms == [812.3] and result.caller_interruptions == 1
    assert result.silences == 1 and result.misunderstandings == 1 and result.guard_hits == 1
    assert result.disclosed_at_start and result.consent == "notified" and not result.failed


def test_an_intent_whose_outcome_differs_from_its_label_is_not_completed():
    events = [ev(EventKind.DIALOG_DECIDED, intent="book"), ev(EventKind.CALL_ENDED, "abandoned")]
    result = evaluate_call("vr_1", events, {"book": "completed"})
    assert result.completed is False and result.failed
    assert evaluate_call("vr_1", events).completed is None  # no labels: unknown


def test_sampling_takes_every_failure_handoff_and_guard_hit_and_a_stable_share():
    calls = [CallEvaluation(f"vr_{i}", outcome="completed") for i in range(1000)]
    calls[0].outcome = "failed"
    calls[1].handoff = True
    calls[2].guard_hits = 1
    chosen = sample(calls, SamplingPolicy(percent_of_rest=10))
    reasons = {e.call_id: r for e, r in chosen}
    assert reasons["vr_0"] == "failed" and reasons["vr_1"] == "handoff"
    assert reasons["vr_2"] == "guard_hit"
    randoms = [c for c, r in reasons.items() if r == "random"]
    assert 60 < len(randoms) < 140  # about 10 % of 997
    assert sample(calls, SamplingPolicy(percent_of_rest=10)) == chosen  # the same every run
    assert sample(calls, SamplingPolicy(failed=False, handoffs=False, guard_hits=False,
                                        percent_of_rest=0)) == []  # fmt: skip


def test_the_review_sheet_has_a_row_per_sampled_call_and_an_empty_label():
    call = CallEvaluation("vr_9", outcome="failed", intents=["book"], latency_ms=[900.0])
    rows = list(csv.DictReader(io.StringIO(review_sheet([(call, "failed")]))))
    assert rows == [
        {"call_id": "vr_9", "reason": "failed", "outcome": "failed", "intents": "book",
         "completed": "", "latency_ms_max": "900.0", "caller_interruptions": "0",
         "silences": "0", "misunderstandings": "0", "guard_hits": "0",
         "disclosed_at_start": "False", "consent": "", "label": ""}
    ]  # fmt: skip
