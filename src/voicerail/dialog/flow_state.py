"""One call's flow-dialog state: plain data, no behaviour.

Kept apart from the engine (:mod:`voicerail.dialog.flows`) because it is the
part of a call that a session store persists to resume the call on another
worker; every value in it is a plain type, a ``date``/``time``, or a
:class:`~voicerail.dialog.bookings.Booking`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
