"""Handoff rules: each trigger fires on its signal, in precedence order, only when configured."""

from __future__ import annotations

import pytest

from voicerail.errors import ConfigError
from voicerail.handoff.rules import (
    HandoffPolicy,
    HandoffReason,
    HandoffState,
    TurnSignals,
    decide,
)

POLICY = HandoffPolicy.from_mapping(
    {
        "misunderstandings": 2,
        "intents": ["complaint"],
        "sentiment": {"below": -0.5, "turns": 2},
        "tier": {"field": "customer_tier", "values": ["Platinum"]},
    }
)


def run(signals: list[TurnSignals], policy: HandoffPolicy = POLICY) -> list[HandoffReason | None]:
    state, reasons = HandoffState(), []
    for s in signals:
        state, reason = decide(policy, state, s)
        reasons.append(reason)
    return reasons


def test_explicit_request_and_tool_fire_at_once() -> None:
    """Asking for a person, or the LLM's transfer tool, hands off on that turn."""
    assert run([TurnSignals(explicit_request=True)]) == [HandoffReason.EXPLICIT]
    assert run([TurnSignals(tool_requested=True)]) == [HandoffReason.TOOL]


def test_two_misunderstandings_in_a_row() -> None:
    """Today's rule: the second turn in a row not understood hands off; a good turn resets."""
    lost, ok = TurnSignals(understood=False), TurnSignals()
    assert run([lost, ok, lost, lost]) == [None, None, None, HandoffReason.MISUNDERSTANDING]


def test_listed_intent_hands_off() -> None:
    """A complaint hands off; another intent does not."""
    assert run([TurnSignals(intent="book"), TurnSignals(intent="complaint")]) == [
        None,
        HandoffReason.INTENT,
    ]


def test_sentiment_below_threshold_for_two_turns() -> None:
    """Two upset turns in a row hand off; one does not."""
    upset, calm = TurnSignals(sentiment=-0.8), TurnSignals(sentiment=0.2)
    assert run([upset, calm, upset, upset]) == [None, None, None, HandoffReason.SENTIMENT]


def test_tier_hands_off_a_priority_customer_at_the_first_miss() -> None:
    """A platinum customer (CRM field, any case) goes to a human at the first turn missed."""
    vip = {"customer_tier": "platinum"}
    assert run([TurnSignals(context=vip), TurnSignals(understood=False, context=vip)]) == [
        None,
        HandoffReason.TIER,
    ]
    regular = {"customer_tier": "basic"}
    assert run([TurnSignals(understood=False, context=regular)]) == [None]


def test_precedence_tool_over_explicit_over_intent() -> None:
    """When several fire on one turn, the reason is the first in rule 1's order."""
    both = TurnSignals(tool_requested=True, explicit_request=True, intent="complaint")
    assert run([both]) == [HandoffReason.TOOL]
    assert run([TurnSignals(explicit_request=True, intent="complaint")]) == [HandoffReason.EXPLICIT]


def test_unconfigured_triggers_never_fire() -> None:
    """No sentiment or tier section: those triggers stay silent; explicit can be turned off."""
    policy = HandoffPolicy.from_mapping({"explicit": False, "misunderstandings": 0})
    upset = TurnSignals(sentiment=-1.0, understood=False, explicit_request=True)
    assert run([upset] * 5, policy) == [None] * 5


@pytest.mark.parametrize(
    "raw", [{"misunderstandings": "many"}, {"surprise": 1}, {"misunderstandings": -1}]
)
def test_bad_sections_are_refused(raw: dict[str, object]) -> None:
    """A malformed handoff section is a ConfigError naming the section."""
    with pytest.raises(ConfigError) as caught:
        HandoffPolicy.from_mapping(raw, source="clinic.yaml")
    assert caught.value.field == "handoff"
