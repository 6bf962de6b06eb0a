"""One call's flow-dialog state: plain data, no behaviour.

Kept apart from the engine (:mod:`voicerail.dialog.flows`) because it is the
part of a call that a session store persists to resume the call on another
worker; every value in it is a plain type, a ``date``/``time``, or a
:class:`~voicerail.dialog.bookings.Booking`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, time
from typing import Any

from voicerail.dialog.bookings import Booking
from voicerail.dialog.flow_actions import SlotValue

CONFIRM = "<confirm>"  # CallState.awaiting while a confirmation is pending


@dataclass
class CallState:
    """Everything one call's dialog knows (nothing else; see flows.py, rule 1).

    Attributes:
        node: the current node.
        awaiting: the slot being asked, ``CONFIRM``, or None (the node's prompt).
        slots: filled slot values (``date``, ``time`` or ``str``).
        target: the booking a reschedule or cancel will change, once found.
        misunderstandings: misunderstood turns in a row.
        actions_done: successful actions per action name (for idempotency keys).
        history: ``(role, text)`` pairs, role ``"user"`` or ``"agent"``.
        confirm_heard: False when the caller barged in on the pending confirmation.
        ended: the dialog said goodbye or handed off.
    """

    node: str
    awaiting: str | None = None
    slots: dict[str, SlotValue] = field(default_factory=dict)
    target: Booking | None = None
    misunderstandings: int = 0
    actions_done: dict[str, int] = field(default_factory=dict)
    history: list[tuple[str, str]] = field(default_factory=list)
    confirm_heard: bool = True
    ended: bool = False


def _slot_to_json(value: SlotValue) -> dict[str, str]:
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, time):
        return {"time": value.isoformat()}
    return {"str": value}


def _slot_from_json(body: dict[str, str]) -> SlotValue:
    if "date" in body:
        return date.fromisoformat(body["date"])
    if "time" in body:
        return time.fromisoformat(body["time"])
    return body["str"]


def to_snapshot(state: CallState) -> dict[str, Any]:
    """``state`` as JSON-ready data (dates and times tagged), for a session store."""
    target = None
    if state.target is not None:
        target = {**asdict(state.target)}
        target["day"], target["time"] = state.target.day.isoformat(), state.target.time.isoformat()
    return {
        "node": state.node,
        "awaiting": state.awaiting,
        "slots": {name: _slot_to_json(value) for name, value in state.slots.items()},
        "target": target,
        "misunderstandings": state.misunderstandings,
        "actions_done": dict(state.actions_done),
        "history": [list(pair) for pair in state.history],
        "confirm_heard": state.confirm_heard,
        "ended": state.ended,
    }


def from_snapshot(body: dict[str, Any]) -> CallState:
    """The inverse of :func:`to_snapshot`.

    Raises:
        KeyError, ValueError, TypeError: ``body`` is not a snapshot.
    """
    target = body["target"]
    booking = None
    if target is not None:
        booking = Booking(
            **{
                **target,
                "day": date.fromisoformat(target["day"]),
                "time": time.fromisoformat(target["time"]),
            }
        )
    return CallState(
        node=body["node"],
        awaiting=body["awaiting"],
        slots={name: _slot_from_json(value) for name, value in body["slots"].items()},
        target=booking,
        misunderstandings=body["misunderstandings"],
        actions_done=dict(body["actions_done"]),
        history=[(role, text) for role, text in body["history"]],
        confirm_heard=body["confirm_heard"],
        ended=body["ended"],
    )
