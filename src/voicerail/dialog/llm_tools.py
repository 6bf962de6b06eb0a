"""The tools the LLM agent offers the model (OpenAI function-calling schemas).

``writes=True`` marks tools with side effects: their calls carry an idempotency
key and are not run twice in a call (``dialog/llm_agent.py`` rules 1 and 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from typing import Any

from voicerail.dialog.slots import format_day, format_time
from voicerail.events.model import Outcome
from voicerail.handoff.summary import HandoffSummary
from voicerail.providers.base import ToolSpec

TOOLS: dict[str, ToolSpec] = {
    "book_appointment": ToolSpec(
        name="book_appointment",
        description="Book an appointment once the caller has confirmed day, time and name.",
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "caller's full name"},
                "day": {"type": "string", "description": "ISO date, YYYY-MM-DD"},
                "time": {"type": "string", "description": "24-hour time, HH:MM"},
            },
            "required": ["name", "day", "time"],
        },
        writes=True,
    ),
    "cancel_appointment": ToolSpec(
        name="cancel_appointment",
        description="Cancel the caller's appointment, found by full name.",
        parameters={
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
        writes=True,
    ),
    "transfer_to_human": ToolSpec(
        name="transfer_to_human",
        description="Transfer the call to the front desk when the caller asks for a person.",
        parameters={"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    "verify_caller": ToolSpec(
        name="verify_caller",
        description="Check an identity answer of the caller (e.g. check 'dob' with the date "
        "of birth as YYYY-MM-DD). Answers only whether it matched.",
        parameters={
            "type": "object",
            "properties": {"check": {"type": "string"}, "value": {"type": "string"}},
            "required": ["check", "value"],
        },
    ),
    "collect_payment": ToolSpec(
        name="collect_payment",
        description="Start taking the caller's card on the phone keypad; then ask them to "
        "key the card number and press pound. Never ask them to say card digits aloud. "
        "You will be told the card's token and last four digits.",
        parameters={"type": "object", "properties": {}},
    ),
    "end_call": ToolSpec(
        name="end_call",
        description="End the call after saying goodbye.",
        parameters={"type": "object", "properties": {}},
    ),
}


@dataclass
class ToolResult:
    """What a tool did, for the model and for the reply."""

    content: dict[str, Any]
    booking_id: str | None = None
    outcome: Outcome | None = None
    handoff: bool = False
    end_call: bool = False
    summary: HandoffSummary | None = None
    pci: bool = False  # collect_payment: a PCI pause starts (compliance/dialog.py)


def action_text(name: str, args: dict[str, Any], result: ToolResult) -> str:
    """One phrase for the handoff summary: ``"booked BK-1A2B3C4D for 2026-12-10 10:00"``."""
    if name == "book_appointment" and result.booking_id:
        return f"booked {result.booking_id} for {args.get('day')} {args.get('time')}"
    if name == "cancel_appointment":
        return f"cancelled the appointment under {args.get('name')}"
    return name.replace("_", " ")


def spoken_action(name: str, args: dict[str, Any], result: ToolResult) -> str:
    """:func:`action_text` as a caller hears it in a resumed call's recap:
    ``"booked Tuesday, November 24 at 3 PM for Maria Lopez"``."""
    if name == "book_appointment" and result.booking_id:
        try:
            day = format_day(date.fromisoformat(str(args.get("day"))))
            at = format_time(time.fromisoformat(str(args.get("time"))))
        except ValueError:
            return action_text(name, args, result)
        return f"booked {day} at {at} for {args.get('name')}"
    return action_text(name, args, result)


def merge_results(a: ToolResult, b: ToolResult) -> ToolResult:
    """What two tool calls of one model round did together (the later one's content)."""
    return ToolResult(
        content=b.content,
        booking_id=b.booking_id or a.booking_id,
        outcome=b.outcome or a.outcome,
        handoff=a.handoff or b.handoff,
        end_call=a.end_call or b.end_call,
        summary=b.summary or a.summary,
        pci=a.pci or b.pci,
    )
