"""The handoff summary: what a human needs in the first seconds of a transferred call.

Rules kept here:

1. Built once, at handoff time, from what the call already holds: the gated
   CRM context (never the raw record: ``crm/gate.py``), the reason, the slots
   collected, the writes the agent made, the caller's last words and the
   transcript's link. Pure: no I/O.
2. It answers six questions: who is calling, why the handoff, what the agent
   collected, what it did, what the caller expects, and what to do next.
3. The summary is personal data: stored in an event's ``pii`` field and in the
   CRM through the outbox (``handoff_summary`` write), never in a log message.
   :meth:`HandoffSummary.safe_dict` is the part that may be logged.
4. The spoken version (:meth:`HandoffSummary.whisper_text`) is what the human
   hears before joining a warm transfer: short, names first, no transcript.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicerail.handoff.rules import HandoffReason

_REASON_TEXT = {
    HandoffReason.TOOL: "the assistant decided a person should take over",
    HandoffReason.EXPLICIT: "the caller asked for a person",
    HandoffReason.INTENT: "the caller raised {intent}",
    HandoffReason.TIER: "a {tier} customer the assistant could not help at once",
    HandoffReason.MISUNDERSTANDING: "the assistant did not understand the caller {count} times",
    HandoffReason.SENTIMENT: "the caller sounded upset",
    HandoffReason.ERROR: "the assistant could not complete the request",
}
_NEXT_ACTION = {
    HandoffReason.TOOL: "Continue the caller's request from where the assistant stopped.",
    HandoffReason.EXPLICIT: "Greet the caller and take over their request.",
    HandoffReason.INTENT: "Acknowledge the {intent} and resolve it; apologize if warranted.",
    HandoffReason.TIER: "Greet them as a {tier} customer and resolve the request first.",
    HandoffReason.MISUNDERSTANDING: "Ask what they need; the assistant could not tell.",
    HandoffReason.SENTIMENT: "Acknowledge the frustration before anything else.",
    HandoffReason.ERROR: "Complete the request by hand; the system failed to.",
}


@dataclass(frozen=True)
class HandoffSummary:
    """Rule 2's answers.

    Attributes:
        call_id: the call.
        reason: why the handoff.
        reason_text: the reason in a sentence.
        caller: who is calling: the gated CRM fields, empty for an unknown caller.
        known_caller: the CRM recognized the caller.
        collected: slots (or tool arguments) collected, by name.
        actions: what the agent did (``"booked BK-1A2B3C4D"``).
        caller_expects: what the caller asked for last, in their words.
        next_action: the recommended next step for the human.
        transcript_url: the call's timeline on the dashboard.
    """

    call_id: str
    reason: HandoffReason
    reason_text: str
    caller: Mapping[str, Any]
    known_caller: bool
    collected: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    caller_expects: str = ""
    next_action: str = ""
    transcript_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Everything (personal data included: rule 3)."""
        return {
            "call_id": self.call_id,
            "reason": str(self.reason),
            "reason_text": self.reason_text,
            "caller": dict(self.caller),
            "known_caller": self.known_caller,
            "collected": dict(self.collected),
            "actions": list(self.actions),
            "caller_expects": self.caller_expects,
            "next_action": self.next_action,
            "transcript_url": self.transcript_url,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> HandoffSummary:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a summary's dict (a missing key, an unknown reason).
        """
        try:
            return cls(
                call_id=str(body["call_id"]),
                reason=HandoffReason(body["reason"]),
                reason_text=str(body["reason_text"]),
                caller=dict(body.get("caller") or {}),
                known_caller=bool(body.get("known_caller")),
                collected=dict(body.get("collected") or {}),
                actions=tuple(str(a) for a in body.get("actions") or ()),
                caller_expects=str(body.get("caller_expects") or ""),
                next_action=str(body.get("next_action") or ""),
                transcript_url=str(body.get("transcript_url") or ""),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a handoff summary: {exc}") from None

    def safe_dict(self) -> dict[str, Any]:
        """The part without personal data: reason, field names, counts (rule 3)."""
        return {
            "call_id": self.call_id,
            "reason": str(self.reason),
            "known_caller": self.known_caller,
            "caller_fields": sorted(self.caller),
            "collected_fields": sorted(self.collected),
            "num_actions": len(self.actions),
        }

    def whisper_text(self) -> str:
        """What the human hears before joining (rule 4)."""
        name = caller_name(self.caller) or str(self.collected.get("name") or "")
        if self.known_caller:
            who = f"{name}, a known customer" if name else "a known customer"
        else:
            who = f"{name}, not in the CRM" if name else "a caller not in the CRM"
        parts = [f"Incoming transfer: {who}. Reason: {self.reason_text}."]
        if self.actions:
            parts.append("The assistant " + "; ".join(self.actions) + ".")
        if self.caller_expects:
            parts.append(f"They said: {self.caller_expects}")
        parts.append(self.next_action)
        return " ".join(parts)


#: First and last name fields as the CRMs name them: ours and the embedded CRM's,
#: HubSpot's contact properties, Salesforce's Contact fields.
_NAME_FIELDS = (("first_name", "last_name"), ("firstname", "lastname"), ("FirstName", "LastName"))


def caller_name(fields: Mapping[str, Any]) -> str:
    """The caller's name from gated CRM fields (any CRM's naming), or ``name``; "" if none."""
    for first, last in _NAME_FIELDS:
        name = " ".join(str(fields[k]) for k in (first, last) if fields.get(k))
        if name:
            return name
    return str(fields.get("name") or "")


def build_summary(
    *,
    call_id: str,
    reason: HandoffReason,
    context: Mapping[str, Any],
    known_caller: bool,
    collected: Mapping[str, Any] | None = None,
    actions: Sequence[str] = (),
    last_caller_text: str = "",
    intent: str | None = None,
    tier: str | None = None,
    not_understood: int = 0,
    dashboard_url: str = "",
) -> HandoffSummary:
    """Build the summary (rule 1).

    Args:
        call_id: the call.
        reason: the trigger that fired.
        context: the gated CRM fields (``GatedContext.fields``).
        known_caller: the CRM recognized the caller.
        collected: slots or tool arguments collected so far.
        actions: what the agent did, one phrase each.
        last_caller_text: the caller's last turn (personal data).
        intent: the intent that triggered an ``intent`` handoff.
        tier: the tier that triggered a ``tier`` handoff.
        not_understood: turns not understood in a row.
        dashboard_url: the dashboard's base URL; the link is ``…/dashboard/calls/<id>``.
    """
    values = {
        "intent": (intent or "a request").replace("_", " "),
        "tier": tier or "priority",
        "count": not_understood,
    }
    link = (
        f"{dashboard_url.rstrip('/')}/dashboard/calls/{call_id}"
        if dashboard_url
        else (f"/dashboard/calls/{call_id}")
    )
    return HandoffSummary(
        call_id=call_id,
        reason=reason,
        reason_text=_REASON_TEXT[reason].format(**values),
        caller=dict(context),
        known_caller=known_caller,
        collected=dict(collected or {}),
        actions=tuple(actions),
        caller_expects=last_caller_text.strip(),
        next_action=_NEXT_ACTION[reason].format(**values),
        transcript_url=link,
    )


def whisper_from_events(events: Sequence[Any]) -> str | None:
    """What the human hears: the spoken form of the summary the dialog stored at handoff
    time, rebuilt from its structured ``pii["handoff_summary"]`` (the compliance screen
    redacts the stored free text ``pii["handoff_whisper"]``, names included, but keeps
    the structured fields, which the human needs: who is calling); the stored whisper
    when there is no readable summary."""
    for event in reversed(events):
        pii = event.pii or {}
        summary = pii.get("handoff_summary")
        if isinstance(summary, Mapping):
            try:
                return HandoffSummary.from_dict(summary).whisper_text()
            except ValueError:
                pass
        whisper = pii.get("handoff_whisper")
        if isinstance(whisper, str) and whisper:
            return whisper
    return None


def handoff_from_events(events: Sequence[Any]) -> dict[str, Any] | None:
    """The call's handoff for the REST API and the dashboard: the last event whose
    ``pii`` holds a ``handoff_summary`` (the dialog's reply at handoff time).

    Returns:
        ``{"reason", "requested_at", "summary": {...}}``, or None when the call
        was not handed off with a summary.
    """
    for event in reversed(events):
        summary = event.pii.get("handoff_summary") if event.pii else None
        if isinstance(summary, Mapping):
            return {
                "reason": summary.get("reason"),
                "requested_at": event.at_wall,
                "summary": dict(summary),
            }
    return None
