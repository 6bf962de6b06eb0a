"""When to hand a call to a human: the agent file's rules as a pure policy.

Rules kept here:

1. Six triggers, checked in this order on every caller turn; the first that
   fires is the reason: ``tool`` (the LLM called ``transfer_to_human``),
   ``explicit`` (the caller asked for a person), ``intent`` (an intent the
   agent file lists, e.g. a complaint), ``tier`` (the CRM says the caller is a
   customer of a listed tier and they asked for anything the agent cannot
   finish: here, a turn not understood), ``misunderstanding`` (that many turns
   in a row not understood; two is today's rule) and ``sentiment`` (that many
   turns in a row scored below the threshold).
2. The policy is ``decide(policy, state, signals) -> (state, reason)``: no
   clock, no I/O, no dialog. The counters live in :class:`HandoffState`.
3. A trigger the agent file does not configure never fires.

The agent file's section (every key optional)::

    handoff:
      explicit: true
      tool: true
      misunderstandings: 2
      intents: [complaint]
      sentiment: {below: -0.5, turns: 2}
      tier: {field: customer_tier, values: [platinum, gold]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from voicerail.errors import ConfigError


class HandoffReason(StrEnum):
    """Why the call goes to a human (rule 1's triggers)."""

    TOOL = "tool"
    EXPLICIT = "explicit"
    INTENT = "intent"
    TIER = "tier"
    MISUNDERSTANDING = "misunderstanding"
    SENTIMENT = "sentiment"
    ERROR = "error"  # the agent could not finish a write (a store or CRM failure)


@dataclass(frozen=True)
class HandoffPolicy:
    """The agent file's ``handoff`` rules.

    Attributes:
        explicit: hand off when the caller asks for a person.
        tool: hand off when the LLM calls ``transfer_to_human``.
        misunderstandings: turns not understood in a row that hand off (0: never).
        intents: intents that hand off at once.
        sentiment_below: a turn's sentiment score (-1..1) under this counts.
        sentiment_turns: such turns in a row that hand off (0: never).
        tier_field: the gated CRM field holding the customer's tier.
        tier_values: the tiers handed off at their first turn not understood.
    """

    explicit: bool = True
    tool: bool = True
    misunderstandings: int = 2
    intents: tuple[str, ...] = ()
    sentiment_below: float = -0.5
    sentiment_turns: int = 0
    tier_field: str | None = None
    tier_values: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, source: str = "<agent>") -> HandoffPolicy:
        """Parse the agent file's ``handoff`` section (None: the defaults).

        Raises:
            ConfigError: an unknown key or a value of the wrong type, naming the field.
        """
        if raw is None:
            return cls()
        known = {"explicit", "tool", "misunderstandings", "intents", "sentiment", "tier"}
        unknown = set(raw) - known - {"fallback", "target", "mode", "text"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", source=source, field="handoff")
        sentiment = raw.get("sentiment") or {}
        tier = raw.get("tier") or {}
        try:
            policy = cls(
                explicit=bool(raw.get("explicit", True)),
                tool=bool(raw.get("tool", True)),
                misunderstandings=int(raw.get("misunderstandings", 2)),
                intents=tuple(str(i) for i in raw.get("intents") or ()),
                sentiment_below=float(sentiment.get("below", -0.5)),
                sentiment_turns=int(sentiment.get("turns", 2 if sentiment else 0)),
                tier_field=str(tier["field"]) if tier.get("field") else None,
                tier_values=tuple(str(v).casefold() for v in tier.get("values") or ()),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad value: {exc}", source=source, field="handoff") from exc
        if policy.misunderstandings < 0 or policy.sentiment_turns < 0:
            raise ConfigError("counts must be >= 0", source=source, field="handoff")
        return policy


@dataclass(frozen=True)
class HandoffState:
    """Counters across turns (rule 2).

    Attributes:
        not_understood: turns in a row the agent did not understand.
        negative: turns in a row whose sentiment was below the threshold.
    """

    not_understood: int = 0
    negative: int = 0


@dataclass(frozen=True)
class TurnSignals:
    """What one caller turn told the dialog.

    Attributes:
        understood: the agent could act on the turn.
        explicit_request: the caller asked for a person.
        tool_requested: the LLM called ``transfer_to_human``.
        intent: the recognized intent, if any.
        sentiment: the turn's sentiment in [-1, 1], if scored.
        context: the gated CRM fields (for the tier rule).
    """

    understood: bool = True
    explicit_request: bool = False
    tool_requested: bool = False
    intent: str | None = None
    sentiment: float | None = None
    context: Mapping[str, Any] | None = None


def decide(
    policy: HandoffPolicy, state: HandoffState, signals: TurnSignals
) -> tuple[HandoffState, HandoffReason | None]:
    """One turn of rule 1: the new counters, and the reason to hand off now (or None)."""
    not_understood = 0 if signals.understood else state.not_understood + 1
    negative = (
        state.negative + 1
        if signals.sentiment is not None and signals.sentiment < policy.sentiment_below
        else 0
    )
    new = replace(state, not_understood=not_understood, negative=negative)
    tier = str((signals.context or {}).get(policy.tier_field or "", "")).casefold()
    checks = (
        (HandoffReason.TOOL, policy.tool and signals.tool_requested),
        (HandoffReason.EXPLICIT, policy.explicit and signals.explicit_request),
        (HandoffReason.INTENT, signals.intent is not None and signals.intent in policy.intents),
        (HandoffReason.TIER, bool(tier) and tier in policy.tier_values and not_understood > 0),
        (
            HandoffReason.MISUNDERSTANDING,
            policy.misunderstandings > 0 and not_understood >= policy.misunderstandings,
        ),
        (
            HandoffReason.SENTIMENT,
            policy.sentiment_turns > 0 and negative >= policy.sentiment_turns,
        ),
    )
    return new, next((reason for reason, fired in checks if fired), None)
