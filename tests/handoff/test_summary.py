"""The handoff summary answers who, why, collected, did, expects and next, for each rule."""

from __future__ import annotations

import pytest

from voicerail.handoff.rules import HandoffReason
from voicerail.handoff.summary import build_summary

CONTEXT = {"first_name": "Ada", "last_name": "Lovelace", "customer_tier": "platinum"}


@pytest.mark.parametrize(
    ("reason", "why", "next_step"),
    [
        (HandoffReason.EXPLICIT, "asked for a person", "take over their request"),
        (HandoffReason.TOOL, "assistant decided", "from where the assistant stopped"),
        (HandoffReason.INTENT, "raised complaint", "Acknowledge the complaint"),
        (HandoffReason.TIER, "a platinum customer", "as a platinum customer"),
        (HandoffReason.MISUNDERSTANDING, "did not understand the caller 2 times", "Ask what"),
        (HandoffReason.SENTIMENT, "sounded upset", "frustration"),
    ],
)
def test_summary_content_for_each_rule(reason: HandoffReason, why: str, next_step: str) -> None:
    """Each reason has its own sentence and recommended next action."""
    summary = build_summary(
        call_id="vr_1",
        reason=reason,
        context=CONTEXT,
        known_caller=True,
        collected={"day": "2026-12-10"},
        actions=["booked BK-1A2B3C4D for 2026-12-10 10:00"],
        last_caller_text="  I was charged twice for my visit  ",
        intent="complaint",
        tier="platinum",
        not_understood=2,
        dashboard_url="https://voice.example.com/",
    )
    assert why in summary.reason_text
    assert next_step in summary.next_action
    assert summary.caller["first_name"] == "Ada"
    assert summary.caller_expects == "I was charged twice for my visit"
    assert summary.transcript_url == "https://voice.example.com/dashboard/calls/vr_1"
    whisper = summary.whisper_text()
    assert whisper.startswith("Incoming transfer: Ada Lovelace, a known customer.")
    assert "booked BK-1A2B3C4D" in whisper and summary.next_action in whisper


def test_unknown_caller_and_safe_dict() -> None:
    """An unknown caller is said so; the loggable part holds names and counts, no values."""
    summary = build_summary(
        call_id="vr_2",
        reason=HandoffReason.EXPLICIT,
        context={},
        known_caller=False,
        collected={"name": "Grace Hopper"},
        last_caller_text="my card number is 4111",
    )
    # The name the caller gave is said, and that the CRM did not know them.
    assert "Incoming transfer: Grace Hopper, not in the CRM." in summary.whisper_text()
    assert summary.transcript_url == "/dashboard/calls/vr_2"
    safe = repr(summary.safe_dict())
    assert "Grace" not in safe and "4111" not in safe
    assert summary.safe_dict()["collected_fields"] == ["name"]
    assert summary.to_dict()["collected"] == {"name": "Grace Hopper"}


@pytest.mark.parametrize(
    "fields",
    [
        {"firstname": "Maria", "lastname": "Lopez"},  # HubSpot contact properties
        {"FirstName": "Maria", "LastName": "Lopez"},  # Salesforce Contact fields
        {"name": "Maria Lopez"},
    ],
)
def test_the_whisper_names_the_caller_whatever_the_crm_calls_the_fields(fields) -> None:
    """A known caller's name is read from each CRM's own field names."""
    summary = build_summary(
        call_id="vr_3", reason=HandoffReason.EXPLICIT, context=fields, known_caller=True
    )
    assert summary.whisper_text().startswith("Incoming transfer: Maria Lopez, a known customer.")


def test_the_whisper_is_rebuilt_from_the_stored_summary() -> None:
    """The stored free-text whisper may be redacted (compliance); the human still hears the
    caller's name, rebuilt from the structured summary."""
    from voicerail.events.model import Event, EventKind
    from voicerail.handoff.summary import HandoffSummary, whisper_from_events

    summary = build_summary(
        call_id="vr_4",
        reason=HandoffReason.EXPLICIT,
        context={"firstname": "Maria", "lastname": "Lopez"},
        known_caller=True,
        actions=["booked BK-1A2B3C4D"],
    )
    assert HandoffSummary.from_dict(summary.to_dict()) == summary
    event = Event("vr_4", EventKind.DIALOG_DECIDED, 1.0, 1.0)
    event.pii["handoff_summary"] = summary.to_dict()
    event.pii["handoff_whisper"] = "Incoming transfer: [redacted:name], a known customer."
    assert whisper_from_events([event]) == summary.whisper_text()
    assert whisper_from_events([event]).startswith("Incoming transfer: Maria Lopez")
    del event.pii["handoff_summary"]
    assert whisper_from_events([event]) == "Incoming transfer: [redacted:name], a known customer."
