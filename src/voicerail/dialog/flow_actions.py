"""The actions a flow node runs: the engine's only writes, all to the booking store.

Rules kept here:

1. An action reads its node's slot values by slot *type* (``name``, ``day``,
   ``time``), not by slot name, so an agent file may name its slots freely
   (which types each action needs is checked at load, ``flow_config.ACTIONS``).
2. A booking write carries the idempotency key ``{call_id}:{verb}:{n}``
   (``book``, ``reschedule``, ``cancel``; ``n`` counts that action's successes
   in the call): a replayed turn, or a call resumed on another worker, returns
   the first booking and writes nothing.
3. Reschedule and cancel first find the booking to change: the active bookings
   under the caller's name (on the named day, for cancel, when one was said),
   the earliest upcoming one first, else the latest past one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from typing import Any

from voicerail.dialog.bookings import Booking, Bookings

SlotValue = date | time | str


def idempotency_key(call_id: str, action: str, number: int) -> str:
    """``"{call_id}:{verb}:{number}"``, e.g. ``"c1:book:1"`` for ``book_appointment`` (rule 2)."""
    return f"{call_id}:{action.split('_')[0]}:{number}"


def find_target(
    store: Bookings, action: str, values: Mapping[str, SlotValue], today: date
) -> Booking | None:
    """The booking ``action`` will change (rule 3), or None when the caller has none.

    Args:
        store: the booking store.
        action: ``reschedule_appointment`` or ``cancel_appointment``.
        values: the node's slot values by type; ``name`` must be there.
        today: the caller's local date.

    Raises:
        StoreError: the store failed.
    """
    day = values.get("day") if action == "cancel_appointment" else None
    found = store.find(str(values["name"]), _typed(day, date))
    upcoming = [b for b in found if b.day >= today]
    return next(iter(upcoming or found[::-1]), None)


def run_action(
    store: Bookings,
    action: str,
    *,
    call_id: str,
    key: str,
    values: Mapping[str, SlotValue],
    target: Booking | None,
) -> Booking | None:
    """Run ``action``; returns the booking written, or None when ``target`` is gone.

    Args:
        store: the booking store.
        action: one of ``flow_config.ACTIONS``.
        call_id: the call that acts.
        key: the idempotency key of a booking (rule 2).
        values: the node's slot values by type (rule 1).
        target: the booking a reschedule or cancel changes (see :func:`find_target`).

    Raises:
        StoreError: the store failed.
        ValueError: ``action`` is unknown (the loader refuses such files).
    """
    if action == "book_appointment":
        return store.create(
            call_id,
            str(values["name"]),
            _typed(values["day"], date),
            _typed(values["time"], time),
            key,
        )
    if action == "reschedule_appointment":
        if target is None:
            return None
        day, at = _typed(values["day"], date), _typed(values["time"], time)
        return store.reschedule(target.booking_id, day, at)
    if action == "cancel_appointment":
        return None if target is None else store.cancel(target.booking_id)
    raise ValueError(f"unknown action {action!r}")


def _typed(value: SlotValue | None, kind: type[Any]) -> Any:
    """``value`` checked to be a ``kind`` (slot types are fixed by the loader)."""
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"slot value {type(value).__name__} is not a {kind.__name__}")
    return value
