"""The caller lookup at call start: inside a deadline, never in the greeting's way.

Rules kept here:

1. The lookup starts when the call starts and runs beside the greeting; the
   greeting never waits for it. The dialog asks for the context when it needs
   it (the first caller turn) and gets what has arrived by then.
2. A lookup that has not answered within ``deadline_s`` (or failed) counts as
   an unknown caller for the rest of the call; its result is not awaited again
   and a late answer is dropped. Why it failed is recorded as a reason without
   personal data: ``"timeout"``, ``"error:<status or code>"``.
3. What leaves this module has passed the context gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voicerail.crm.gate import ContextGate, ContextPolicy, GatedContext
from voicerail.crm.model import CRMConnector, normalize_phone
from voicerail.errors import CRMError

log = logging.getLogger(__name__)


class CallerLookup:
    """One call's lookup of its caller (rules 1-3).

    Args:
        connector: the CRM to ask.
        policy: the agent's context section.
        phone: the caller's number as the telephony provider gave it.
        deadline_s: how long the lookup may take, in seconds from :meth:`start`.
    """

    def __init__(
        self, connector: CRMConnector, policy: ContextPolicy, phone: str, deadline_s: float = 1.5
    ) -> None:
        self._connector = connector
        self._policy = policy
        self._phone = normalize_phone(phone)
        self._deadline_s = deadline_s
        self._task: asyncio.Task[ContextGate] | None = None
        self._gate: ContextGate | None = None
        self.reason: str | None = None

    def start(self) -> None:
        """Start the lookup in the background; returns at once (rule 1)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="crm-lookup")

    async def _run(self) -> ContextGate:
        async with asyncio.timeout(self._deadline_s):
            record = await self._connector.lookup_phone(self._phone)
        return ContextGate(self._policy, record)

    async def gate(self, wait_s: float = 0.0) -> ContextGate:
        """The call's gate: the CRM's answer if it came in time, else an unknown caller.

        Args:
            wait_s: how long the caller of this method can still wait, at most
                (0: only what has already arrived). The lookup's own deadline
                still applies.
        """
        if self._gate is not None:
            return self._gate
        if self._task is None:
            self.start()
        assert self._task is not None
        if not self._task.done() and wait_s > 0:
            await asyncio.wait({self._task}, timeout=wait_s)
        self._gate = self._settle(self._task)
        return self._gate

    def _settle(self, task: asyncio.Task[ContextGate]) -> ContextGate:
        if not task.done():
            # Rule 2: a lookup still running when asked is given up for this call.
            task.cancel()
            self.reason = "pending"
            return ContextGate(self._policy, None)
        if task.cancelled():
            self.reason = "cancelled"
            return ContextGate(self._policy, None)
        exc = task.exception()
        if exc is None:
            return task.result()
        if isinstance(exc, TimeoutError):
            self.reason = "timeout"
        elif isinstance(exc, CRMError):
            self.reason = f"error:{exc.code or exc.status}"
        else:
            self.reason = f"error:{type(exc).__name__}"
            log.warning("crm lookup failed: %s", type(exc).__name__)
        return ContextGate(self._policy, None)

    async def context(self, wait_s: float = 0.0) -> GatedContext:
        """Shorthand for ``(await self.gate(wait_s)).context()``."""
        return (await self.gate(wait_s)).context()

    async def aclose(self) -> None:
        """Cancel a lookup still running (the call ended first)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
