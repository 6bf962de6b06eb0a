"""A call's outcome, from the dialog's decisions and how the call ended. Pure.

Rules:

1. The first outcome a reply decides sticks (a booking made stays ``completed``
   whatever is said after it), except that a later ``handoff`` overrides it: a
   caller who asked for a human is handed off.
2. At the end of the call: an error makes it ``failed``; else the decided outcome
   stands; else a call the agent ended is ``completed``; else (the caller hung up,
   or stayed silent until the goodbye) it is ``abandoned``.
"""

from __future__ import annotations

from voicerail.events.model import Outcome


def decide(current: Outcome | None, reply: Outcome | None) -> Outcome | None:
    """The call's decided outcome after a reply that decided ``reply`` (rule 1)."""
    if reply is Outcome.HANDOFF or (reply is not None and current is None):
        return reply
    return current


def final(*, error: str | None, decided: Outcome | None, ended_by: str | None) -> Outcome:
    """The outcome recorded when the call ends (rule 2).

    Args:
        error: the error that ended the call, if one did.
        decided: the outcome the dialog decided, if any.
        ended_by: who ended the call: ``"agent"``, ``"caller"``, ``"silence"``, …
    """
    if error is not None:
        return Outcome.FAILED
    if decided is not None:
        return decided
    if ended_by == "agent":
        return Outcome.COMPLETED
    return Outcome.ABANDONED
