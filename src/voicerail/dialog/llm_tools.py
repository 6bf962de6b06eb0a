"""The tools the LLM agent offers the model (OpenAI function-calling schemas).

``writes=True`` marks tools with side effects: their calls carry an idempotency
key and are not run twice in a call (``dialog/llm_agent.py`` rules 1 and 6).
"""

from __future__ import annotations

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
