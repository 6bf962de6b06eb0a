"""Writes one call's state once per turn, without holding up the call.

Rules:

1. The driver hands over each turn as the dialog decides its reply; the write
   runs in the background, one at a time per call and in turn order, so
   versions follow each other (``session.py`` rule 2).
2. What the caller heard is known only later: a barge-in cuts a reply after it
   was written. :meth:`CallStateRecorder.heard` corrects the last turn in
   memory, and the next turn's write carries the correction.
3. A failed write never fails the call: a ``StoreError`` is logged once per call
   and the recorder goes on; a ``StateConflict`` means another stream now owns
   the call (``state/resume.py`` rule 4): this recorder stops writing and tells
   its stream, which stops without ending the call.
4. A dialog snapshot that says ``"free_text": false`` (the caller declined
   recording consent: ``compliance/dialog.py`` rule 7) makes the state keep no
   turn texts: what the caller said, and the replies that may echo it, become
   :data:`~voicerail.dialog.base.TEXT_NOT_KEPT`, in this turn and the earlier
   ones. The turn count stays (a resumed call numbers its turns on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from voicerail.dialog.base import TEXT_NOT_KEPT
from voicerail.errors import StateConflict, StoreError
from voicerail.state.session import SessionState, StateStore, TurnRecord

log = logging.getLogger(__name__)


class CallStateRecorder:
    """The state writer of one call.

    Args:
        store: where states go.
        state: the call's first state (version 0, or the state a resume restored).
        wall: Unix time, seconds (``updated_at``).
        on_conflict: called once when another stream took the call over (rule 3).
    """

    def __init__(
        self,
        store: StateStore,
        state: SessionState,
        wall: Callable[[], float],
        on_conflict: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._on_conflict = on_conflict
        self.state = state
        self._wall = wall
        self._chain: asyncio.Task[None] | None = None
        self._stopped = False
        self._warned = False
        self.writes = 0
        self._stored_version = state.version  # the last version this recorder stored

    def turn(
        self,
        *,
        caller_text: str,
        agent_text: str,
        outcome: str | None,
        booking_id: str | None,
        dialog: dict[str, Any] | None = None,
        providers: dict[str, str] | None = None,
    ) -> None:
        """Rule 1: record one turn and write the new state in the background."""
        if self._stopped:
            return
        turns = self.state.turns
        record = TurnRecord(len(turns), caller_text, agent_text, agent_text)
        if dialog is not None and dialog.get("free_text") is False:  # rule 4
            turns = tuple(_not_kept(t) for t in turns)
            record = _not_kept(record)
        self.state = self.state.next_version(
            turns=(*turns, record),
            outcome=outcome or self.state.outcome,
            booking_id=booking_id or self.state.booking_id,
            dialog=dialog if dialog is not None else self.state.dialog,
            providers=providers if providers is not None else self.state.providers,
            updated_at=self._wall(),
        )
        previous, snapshot = self._chain, self.state
        self._chain = asyncio.get_running_loop().create_task(self._write(previous, snapshot))

    def heard(self, heard_text: str) -> None:
        """Rule 2: the caller heard only ``heard_text`` of the last reply."""
        if not self.state.turns or self.state.dialog.get("free_text") is False:
            return  # rule 4: no text kept to correct
        *earlier, last = self.state.turns
        fixed = TurnRecord(last.index, last.caller_text, last.agent_text, heard_text)
        self.state = replace(self.state, turns=(*earlier, fixed))

    async def _write(self, previous: asyncio.Task[None] | None, state: SessionState) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        if self._stopped:
            return
        # Each write follows the last one stored, so a failed write is skipped
        # over instead of making every later one stale.
        version = self._stored_version + 1
        try:
            await self._store.save(replace(state, version=version))
        except StateConflict as exc:
            self._stopped = True  # rule 3: another stream owns the call now
            log.warning("call %s: state taken over elsewhere (%s)", state.call_id, exc)
            if self._on_conflict is not None:
                self._on_conflict()
        except StoreError as exc:
            if not self._warned:
                self._warned = True
                log.warning("call %s: state write failed: %s", state.call_id, exc)
        else:
            self._stored_version = version
            self.writes += 1

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Wait (at most ``timeout_s``) for the writes in flight."""
        if self._chain is not None:
            await asyncio.wait({self._chain}, timeout=timeout_s)


def _not_kept(turn: TurnRecord) -> TurnRecord:
    """Rule 4: ``turn`` with its texts replaced (empty ones stay empty)."""

    def gone(text: str) -> str:
        return TEXT_NOT_KEPT if text else ""

    caller, agent, heard = turn.caller_text, turn.agent_text, turn.heard_text
    return TurnRecord(turn.index, gone(caller), gone(agent), gone(heard))
