"""One call's state outside the process that serves it, and the stores that keep it.

Rules:

1. Keys are per call. A read names one call and returns that call's state or
   nothing; a stored state naming another call is an error, never returned.
2. A state is written once per turn with ``version`` one above the stored one
   (1 for the first write). A write based on a stale version is refused with
   :class:`~voicerail.errors.StateConflict`: another worker has written the call
   since, and its state wins.
3. Every write renews the call's time to live (``ttl_s``); a call nobody writes
   for that long is forgotten by the store.
4. The state is JSON: what one worker writes any other worker (or version of
   voicerail with the same ``STATE_SCHEMA``) can read.

:func:`check_write` is the pure rule 2; :class:`MemoryStateStore` (one process)
and ``state/redis_store.py`` (:class:`RedisStateStore`, every worker and host)
implement :class:`StateStore`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from voicerail.errors import StateConflict, StoreError

#: Bumped when the JSON layout changes incompatibly (rule 4).
STATE_SCHEMA = 1
#: Default time to live of a call's state, seconds: longer than any call.
DEFAULT_TTL_S = 4 * 3600.0


@dataclass(frozen=True)
class TurnRecord:
    """One turn of a call, as it happened.

    Attributes:
        index: the turn number, 1 for the caller's first turn (0: the greeting).
        caller_text: what the recognizer heard the caller say (personal data).
        agent_text: the agent's full reply (personal data).
        heard_text: the part of the reply the caller actually heard (before a
            barge-in cut it), which is what a resumed call may refer to.
    """

    index: int
    caller_text: str
    agent_text: str
    heard_text: str


@dataclass(frozen=True)
class SessionState:
    """What a worker needs to carry one call on (rule 4: JSON-ready fields only).

    Attributes:
        call_id: voicerail's call id.
        version: the write number (rule 2); 0 for a state never written.
        call_sid: Twilio's CallSid, by which a resumed stream finds the call.
        worker: the worker that wrote this version (``state/worker.py``).
        dialog: the dialog's own state, slots included, as its ``snapshot()`` gives it.
        turns: the turn history, oldest first.
        outcome: the outcome so far (``completed`` once a booking is written).
        booking_id: the booking written on this call, so a resume never writes it twice.
        providers: the provider chosen per stage (``{"stt": "faster-whisper"}``).
        updated_at: Unix seconds of this write.
        resumes: how many times a new stream took the call over (``state/resume.py``).
    """

    call_id: str
    version: int = 0
    call_sid: str | None = None
    worker: str = ""
    dialog: dict[str, Any] = field(default_factory=dict)
    turns: tuple[TurnRecord, ...] = ()
    outcome: str | None = None
    booking_id: str | None = None
    providers: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0
    resumes: int = 0

    def next_version(self, **changes: Any) -> SessionState:
        """This state with ``changes``, as the next write (version + 1)."""
        return replace(self, version=self.version + 1, **changes)

    def to_json(self) -> str:
        """Rule 4: the stored form.

        Built field by field rather than with ``dataclasses.asdict``, which deep-copies
        the dialog snapshot before ``json.dumps`` walks it again: that copy was most
        of the client's cost of a write (``bench/state_store.py``). Same JSON.
        """
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["turns"] = [
            {
                "index": t.index,
                "caller_text": t.caller_text,
                "agent_text": t.agent_text,
                "heard_text": t.heard_text,
            }
            for t in self.turns
        ]
        body["schema"] = STATE_SCHEMA
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, *, call_id: str) -> SessionState:
        """The inverse of :meth:`to_json`, for the state of ``call_id`` (rule 1).

        Raises:
            StoreError: not a state of this schema, or the state of another call.
        """
        try:
            body = json.loads(text)
            schema = body.pop("schema")
            turns = tuple(TurnRecord(**t) for t in body.pop("turns"))
            state = cls(turns=turns, **body)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"call {call_id}: unreadable state: {exc}") from None
        if schema != STATE_SCHEMA:
            raise StoreError(f"call {call_id}: state schema {schema}, expected {STATE_SCHEMA}")
        if state.call_id != call_id:
            raise StoreError(f"call {call_id}: the stored state names another call")
        return state


def check_write(call_id: str, stored_version: int, new_version: int) -> None:
    """Rule 2: a write of ``new_version`` is allowed over ``stored_version``.

    Raises:
        StateConflict: ``new_version`` is not ``stored_version + 1``.
    """
    if new_version != stored_version + 1:
        raise StateConflict(call_id, new_version - 1, stored_version)


class StateStore(Protocol):
    """Where call states live. Every method may raise ``StoreError``."""

    async def load(self, call_id: str) -> SessionState | None:
        """The call's latest state, None when there is none (never written, expired)."""
        ...

    async def load_by_call_sid(self, call_sid: str) -> SessionState | None:
        """The latest state of the call with this Twilio CallSid, if any."""
        ...

    async def save(self, state: SessionState) -> None:
        """Store ``state`` (rules 2 and 3).

        Raises:
            StateConflict: ``state.version`` is not one above the stored version.
            StoreError: the store failed.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryStateStore:
    """:class:`StateStore` in this process's memory (one worker; tests).

    States are kept as JSON text, so no caller shares objects with the store.

    Args:
        ttl_s: rule 3, seconds.
        monotonic: the clock of the time to live, seconds.
    """

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S, monotonic: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._states: dict[str, tuple[float, int, str]] = {}  # call_id: (expires, version, json)
        self._by_sid: dict[str, str] = {}

    def _live(self, call_id: str) -> tuple[float, int, str] | None:
        entry = self._states.get(call_id)
        if entry is not None and entry[0] <= self._monotonic():
            del self._states[call_id]
            return None
        return entry

    async def load(self, call_id: str) -> SessionState | None:
        entry = self._live(call_id)
        return None if entry is None else SessionState.from_json(entry[2], call_id=call_id)

    async def load_by_call_sid(self, call_sid: str) -> SessionState | None:
        call_id = self._by_sid.get(call_sid)
        return None if call_id is None else await self.load(call_id)

    async def save(self, state: SessionState) -> None:
        entry = self._live(state.call_id)
        check_write(state.call_id, entry[1] if entry else 0, state.version)
        self._states[state.call_id] = (
            self._monotonic() + self.ttl_s,
            state.version,
            state.to_json(),
        )
        if state.call_sid:
            self._by_sid[state.call_sid] = state.call_id

    async def aclose(self) -> None:
        self._states.clear()
