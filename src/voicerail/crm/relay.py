"""The relay: claims due outbox rows and delivers them to the CRM.

Rules kept here:

1. One batch at a time: claim up to ``batch_size`` due rows (a lease of
   ``lease_s``), deliver each with a deadline of ``attempt_timeout_s``, then
   complete or fail it (``crm/outbox.py`` rules 2-4).
2. A delivery that times out may have been applied by the CRM (it committed,
   the answer was lost). It is retried like any transient failure; the CRM's
   upsert by idempotency key makes the retry an update, not a second record.
3. A relay that dies mid-batch (killed, cancelled, crashed) leaves its leases
   to expire; it never needs cleaning up. Several relays may run at once.
4. The clock is injected: ``now_s`` for the outbox comes from ``clock.wall()``.
5. The outbox's calls (claim, complete, fail) are blocking database calls
   (sqlite3, psycopg): they run in a worker thread, never on the event loop,
   which carries the calls' audio. Each holds the outbox's own lock and the
   database's busy timeout (5 s), so none waits without a deadline.
6. An outbox that fails (its database down) does not end :meth:`Relay.run`:
   the relay rests and claims again; the rows wait, leased or not, meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from voicerail.clock import Clock, SystemClock
from voicerail.crm.model import CRMConnector
from voicerail.crm.outbox import Outbox, OutboxEntry, RetryPolicy
from voicerail.errors import CRMError, StoreError

log = logging.getLogger(__name__)


@dataclass
class RelayCounts:
    """What one relay did, for benchmarks and logs.

    Attributes:
        delivered: rows completed by this relay.
        retried: failed attempts scheduled for a retry.
        dead_lettered: rows this relay gave up on.
        fenced: outcomes refused because another relay had taken the lease.
        latencies_s: per delivered row, delivery time minus record time (wall seconds).
        store_errors: batches lost to an outbox failure (rule 6).
    """

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    fenced: int = 0
    latencies_s: list[float] = field(default_factory=list)
    store_errors: int = 0


class Relay:
    """Delivers an outbox's rows to one CRM (rules 1-4).

    Args:
        outbox: the outbox (SQLite or PostgreSQL).
        connector: the CRM.
        owner: this relay's name on its leases (unique per process and relay).
        clock: the wall clock for the outbox's times.
        policy: backoff and dead-letter numbers.
        batch_size: rows per claim.
        lease_s: how long a claim keeps other relays off, seconds.
        attempt_timeout_s: deadline of one delivery, seconds.
    """

    def __init__(
        self,
        outbox: Outbox,
        connector: CRMConnector,
        owner: str,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        batch_size: int = 50,
        lease_s: float = 30.0,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.connector = connector
        self.owner = owner
        self.clock = clock or SystemClock()
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.attempt_timeout_s = attempt_timeout_s
        self.counts = RelayCounts()

    async def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many rows were claimed."""
        entries = await asyncio.to_thread(
            self.outbox.claim, self.owner, self.batch_size, self.clock.wall(), self.lease_s
        )
        for entry in entries:
            await self.deliver(entry)
        return len(entries)

    async def deliver(self, entry: OutboxEntry) -> None:
        """Deliver one claimed row and record the outcome (rules 1 and 2)."""
        write = entry.write
        key = write.idempotency_key
        try:
            async with asyncio.timeout(self.attempt_timeout_s):
                receipt = await self.connector.upsert(write)
        except TimeoutError:
            await self._failed(entry, "timeout", retryable=True, retry_after_s=None)
            return
        except CRMError as exc:
            reason = f"{exc.status or ''}:{exc.code or exc.error_class}"
            await self._failed(
                entry, reason, retryable=exc.retryable, retry_after_s=exc.retry_after_s
            )
            return
        now_s = self.clock.wall()
        if await asyncio.to_thread(self.outbox.complete, key, self.owner, now_s, receipt.crm_id):
            self.counts.delivered += 1
            self.counts.latencies_s.append(now_s - entry.created_at)
        else:
            self.counts.fenced += 1

    async def _failed(
        self, entry: OutboxEntry, reason: str, *, retryable: bool, retry_after_s: float | None
    ) -> None:
        key = entry.write.idempotency_key
        now_s = self.clock.wall()
        give_up = (
            not retryable
            or entry.attempts >= self.policy.max_attempts
            or entry.claims >= self.policy.max_claims
        )
        retry_at = (
            None
            if give_up
            else self.policy.next_attempt_s(key, entry.attempts, now_s, retry_after_s)
        )
        if not await asyncio.to_thread(self.outbox.fail, key, self.owner, now_s, reason, retry_at):
            self.counts.fenced += 1
        elif give_up:
            self.counts.dead_lettered += 1
            # The key holds the call id and action, no personal data.
            log.warning(
                "crm write dead-lettered after %d attempts: %s (%s)", entry.attempts, key, reason
            )
        else:
            self.counts.retried += 1

    async def run(self, idle_s: float = 0.5, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set (or cancelled), resting ``idle_s`` when nothing is due
        or the outbox failed (rule 6)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except StoreError as exc:
                # The outbox's database is down or busy: the relay waits and tries
                # again rather than ending (writes wait in the outbox meanwhile).
                log.warning("crm relay: outbox unavailable, retrying: %s", exc)
                self.counts.store_errors += 1
                claimed = 0
            if claimed == 0:
                try:
                    async with asyncio.timeout(idle_s):
                        await stop.wait()
                except TimeoutError:
                    pass
