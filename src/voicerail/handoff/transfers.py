"""Warm transfers as records in the call state store, so any worker can settle one.

Twilio posts a transfer's status and conference callbacks to the public URL, and
behind ``serve --workers N`` (or several hosts) each may reach a different
worker than the one that dialled the human. So a transfer lives as a record in
the :class:`~voicerail.state.session.StateStore` (in memory for one process,
Redis for several), not in one process's memory.

Rules kept here:

1. A transfer is stored as a :class:`~voicerail.state.session.SessionState`
   under the call id ``transfer:<caller's CallSid>``, with the record in its
   ``dialog`` field and no ``call_sid`` (so a lookup of the caller's CallSid
   still finds the call's own state, never the transfer's). The state store's
   interface is reused as it is rather than given a second kind of value.
2. Every change is a versioned write (``state/session.py`` rule 2): read, change,
   write the next version; a write refused because another worker wrote first
   is retried from a fresh read, at most :data:`MAX_TRIES` times.
3. The outcome is set once. :meth:`TransferBook.settle` reports whether this
   caller set it; only that caller applies the fallback, cancels the human's
   leg or books the callback, so two callbacks on two workers act once.
4. Times are Unix seconds (wall clock): a request made on one worker and
   answered on another is measured across processes.
5. Every store call has a deadline (``timeout_s``); a store that does not answer
   in time raises :class:`~voicerail.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from voicerail.errors import StateConflict, StoreError
from voicerail.state.session import SessionState, StateStore

MAX_TRIES = 5  # rule 2
_PREFIX = "transfer:"


@dataclass(frozen=True)
class TransferRecord:
    """One warm transfer, as every worker sees it.

    Attributes:
        caller_sid: the caller's CallSid.
        call_id: voicerail's call id of the handed-off call.
        requested_at: when the agent asked for a human, Unix seconds (the SLA's start).
        human_sid: the human's leg, once dialled (or first heard of in a callback).
        outcome: a :class:`~voicerail.handoff.twilio_transfer.TransferOutcome` value
            once known (rule 3).
        fallback: the fallback applied, when no human answered.
        settled_at: when the outcome was known, Unix seconds.
        human_joined: the human's leg joined the caller's conference.
        caller_parameters: the caller's stream parameters (``from``, ``to``), given
            again to the stream of the ``agent`` fallback.
        base_url: the server's public base URL the transfer began under (for the
            fallback's stream and action URLs, whichever worker applies it).
        earlier_legs: the human legs of this call's earlier transfers (the caller
            came back to the agent and asked again); their late callbacks are not
            this transfer's.
    """

    caller_sid: str
    call_id: str
    requested_at: float
    human_sid: str | None = None
    outcome: str | None = None
    fallback: str | None = None
    settled_at: float | None = None
    human_joined: bool = False
    caller_parameters: Mapping[str, str] = field(default_factory=dict)
    base_url: str = ""
    earlier_legs: tuple[str, ...] = ()

    @property
    def after_s(self) -> float | None:
        """Seconds from the request to the outcome (the SLA figure); None while open."""
        if self.settled_at is None:
            return None
        return max(0.0, self.settled_at - self.requested_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        body = asdict(self)
        body["caller_parameters"] = dict(self.caller_parameters)
        body["earlier_legs"] = list(self.earlier_legs)
        return body

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> TransferRecord:
        """The inverse of :meth:`to_dict`.

        Raises:
            StoreError: not a transfer record.
        """
        try:
            return cls(
                **{
                    **body,
                    "caller_parameters": dict(body.get("caller_parameters") or {}),
                    "earlier_legs": tuple(body.get("earlier_legs") or ()),
                }
            )
        except TypeError as exc:
            raise StoreError(f"unreadable transfer record: {exc}") from None


class TransferBook:
    """Transfer records in a state store (rules 1-5).

    Args:
        store: the call state store (``runtime.state``, or one in memory).
        timeout_s: deadline of each store call, seconds.
    """

    def __init__(self, store: StateStore, timeout_s: float = 2.0) -> None:
        self.store = store
        self.timeout_s = timeout_s

    async def _load(self, caller_sid: str) -> SessionState | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.store.load(_PREFIX + caller_sid)
        except TimeoutError:
            raise StoreError(f"transfer {caller_sid}: state read timed out") from None

    async def _save(self, state: SessionState) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.store.save(state)
        except TimeoutError:
            raise StoreError(f"{state.call_id}: state write timed out") from None

    async def get(self, caller_sid: str) -> TransferRecord | None:
        """The transfer of ``caller_sid``'s call, None when there is none.

        Raises:
            StoreError: the store failed or did not answer in time.
        """
        state = await self._load(caller_sid)
        return None if state is None else TransferRecord.from_dict(state.dialog)

    async def open(self, record: TransferRecord, wall_s: float) -> None:
        """Store a new transfer, replacing a finished one of the same call (the caller
        came back to the agent and asked for a human again).

        Raises:
            StoreError: the store failed, or another worker kept changing the record.
        """

        def edit(current: TransferRecord | None) -> TransferRecord:
            if current is None:
                return record
            legs = current.earlier_legs + ((current.human_sid,) if current.human_sid else ())
            return replace(record, earlier_legs=legs)

        await self.change(record.caller_sid, edit, wall_s)

    async def change(
        self,
        caller_sid: str,
        edit: Callable[[TransferRecord | None], TransferRecord | None],
        wall_s: float,
    ) -> TransferRecord | None:
        """Rule 2: apply ``edit`` to the stored record (None: none stored) and write
        what it returns (None: write nothing). Returns what was written, or None.

        Raises:
            StoreError: the store failed, or ``MAX_TRIES`` writes were refused.
        """
        for _ in range(MAX_TRIES):
            state = await self._load(caller_sid)
            current = None if state is None else TransferRecord.from_dict(state.dialog)
            changed = edit(current)
            if changed is None:
                return None
            base = state or SessionState(_PREFIX + caller_sid)
            written = base.next_version(
                dialog=changed.to_dict(), outcome=changed.outcome, updated_at=wall_s
            )
            try:
                await self._save(written)
            except StateConflict:
                continue  # another worker wrote first: read again
            return changed
        raise StoreError(f"transfer {caller_sid}: {MAX_TRIES} writes refused")

    async def settle(
        self,
        caller_sid: str,
        outcome: str,
        fallback: str | None,
        wall_s: float,
        human_sid: str | None = None,
    ) -> TransferRecord | None:
        """Rule 3: set the outcome unless one is set. Returns the record when this call
        set it (the caller then acts on it), None when it was already set or no
        such transfer exists.

        Raises:
            StoreError: the store failed.
        """

        def edit(record: TransferRecord | None) -> TransferRecord | None:
            if record is None or record.outcome is not None:
                return None
            return replace(
                record,
                outcome=outcome,
                fallback=fallback,
                settled_at=wall_s,
                human_sid=record.human_sid or human_sid,
            )

        return await self.change(caller_sid, edit, wall_s)
