"""The dialog interface the call driver talks to.

One :class:`Dialog` instance per call holds that call's conversation state and
nothing else: no state crosses calls. Methods are async so that an LLM-backed
dialog implements the same interface as the flow engine.

A dialog that can carry a call on in another stream (``state/resume.py``) also
has ``snapshot(*, free_text=True) -> dict``, ``restore(snapshot)`` (raising
``StoreError`` for a snapshot it cannot read) and ``async resume() ->
AgentReply``; the driver looks for them by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicerail.events.model import Outcome

#: What a snapshot holds instead of what the caller said when free text may not be
#: kept (no recording consent: ``compliance/conduct.py`` rule 2).
TEXT_NOT_KEPT = "[not retained: no recording consent]"


@dataclass(frozen=True)
class AgentReply:
    """What the agent does next.

    Attributes:
        text: what to say (may be several sentences; "" to say nothing).
        end_call: hang up after ``text`` has been heard.
        handoff: a human was requested; the driver records ``HandoffRequested``.
        outcome: the call's outcome once decided (e.g. ``COMPLETED`` after a booking).
        booking_id: id of a booking written during this turn.
        intent: the recognized intent name, if any.
        node: the flow node the dialog is now in.
        data: safe-to-log decision details (scores, slot names, reasons).
        pii: personal values (slot values, names) for the event's marked field.
    """

    text: str
    end_call: bool = False
    handoff: bool = False
    outcome: Outcome | None = None
    booking_id: str | None = None
    intent: str | None = None
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    pii: dict[str, Any] = field(default_factory=dict)


class Dialog(Protocol):
    """A per-call conversation."""

    async def start(self) -> AgentReply:
        """Return the greeting (must include the AI and recording disclosure)."""
        ...

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        """React to a final transcript of one caller turn (``text`` may be empty)."""
        ...

    async def on_dtmf(self, digits: str) -> AgentReply:
        """React to keypad digits (``"0"``-``"9"``, ``"*"``, ``"#"``)."""
        ...

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        """React to the ``count``-th silence timeout in a row.

        With ``final`` the driver is about to hang up: return the goodbye.
        """
        ...

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        """Record that only ``heard_text`` of the last reply ``full_text`` was heard (barge-in)."""
        ...


class DialogFactory(Protocol):
    """Builds one :class:`Dialog` per call from a loaded agent definition."""

    name: str

    def new_dialog(self, call_id: str) -> Dialog:
        """Return a fresh dialog for ``call_id``."""
        ...

    # Optional: ``fixed_texts() -> list[str]``, what the agent says whatever the
    # caller said (``{placeholders}`` left in); the phrase cache synthesizes the
    # sentences of these once. A wrapper of an agent must pass it on.


def snapshot_with(snapshot: Callable[..., dict[str, Any]], *, free_text: bool) -> dict[str, Any]:
    """``snapshot()``, asked for no caller words when ``free_text`` is False; a
    dialog whose ``snapshot`` takes no ``free_text`` gives its usual one."""
    if free_text or "free_text" not in inspect.signature(snapshot).parameters:
        return snapshot()
    return snapshot(free_text=False)
