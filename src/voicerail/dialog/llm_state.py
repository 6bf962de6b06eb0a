"""One LLM call's conversation as JSON-ready data, for a session store (``state/``).

Kept apart from :mod:`voicerail.dialog.llm_agent` (the engine) as
``flow_state.py`` is from the flow engine: this is the part of an LLM call that
another worker needs to carry it on.

Rules:

1. The system messages are not stored: the agent's prompt is rebuilt from the
   agent file, and the CRM context (``crm/gate.py``) is looked up again by the
   worker that resumes, so a gated field never sits in the store.
2. Without free text (``free_text=False``: the caller declined recording
   consent, ``compliance/conduct.py`` rule 2) every caller message is replaced
   by :data:`~voicerail.dialog.base.TEXT_NOT_KEPT`. What the call needs to go on
   stays: the agent's own lines (its pending question), the tool calls with
   their arguments (the slots) and their results (a booking made).
3. A write tool's result (``llm_agent.py`` rule 6) is stored with its
   arguments, so a resumed call that asks for the same booking again gets the
   first result and writes nothing.
"""

from __future__ import annotations

from typing import Any

from voicerail.dialog.base import TEXT_NOT_KEPT
from voicerail.dialog.llm_tools import ToolResult
from voicerail.events.model import Outcome
from voicerail.providers.base import ChatMessage, ToolCall

#: Marks a snapshot as an LLM dialog's (and its layout).
LLM_SNAPSHOT = 1


def messages_to_json(messages: list[ChatMessage], *, free_text: bool) -> list[dict[str, Any]]:
    """Rules 1 and 2: the non-system messages, oldest first."""
    body = []
    for m in messages:
        if m.role == "system":
            continue
        content = m.content if free_text or m.role != "user" else TEXT_NOT_KEPT
        item: dict[str, Any] = {"role": m.role, "content": content}
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls
            ]
        body.append(item)
    return body


def messages_from_json(body: list[dict[str, Any]]) -> list[ChatMessage]:
    """The inverse of :func:`messages_to_json`.

    Raises:
        KeyError, ValueError, TypeError: ``body`` is not such a list.
    """
    messages = []
    for item in body:
        role = item["role"]
        if role not in ("user", "assistant", "tool"):
            raise ValueError(f"message role {role!r} is not stored")
        calls = tuple(
            ToolCall(str(c["id"]), str(c["name"]), dict(c["arguments"]))
            for c in item.get("tool_calls", ())
        )
        messages.append(
            ChatMessage(role, str(item["content"]), item.get("tool_call_id"), tool_calls=calls)
        )
    return messages


def writes_to_json(writes: dict[tuple[str, str], ToolResult]) -> list[dict[str, Any]]:
    """Rule 3: the write tools run, keyed by tool name and canonical arguments."""
    return [
        {
            "tool": name,
            "args": canonical,
            "content": result.content,
            "booking_id": result.booking_id,
            "outcome": str(result.outcome) if result.outcome is not None else None,
        }
        for (name, canonical), result in writes.items()
    ]


def writes_from_json(body: list[dict[str, Any]]) -> dict[tuple[str, str], ToolResult]:
    """The inverse of :func:`writes_to_json`.

    Raises:
        KeyError, ValueError, TypeError: ``body`` is not such a list.
    """
    return {
        (str(w["tool"]), str(w["args"])): ToolResult(
            dict(w["content"]),
            booking_id=w["booking_id"],
            outcome=Outcome(w["outcome"]) if w["outcome"] else None,
        )
        for w in body
    }
