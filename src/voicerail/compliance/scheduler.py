"""The retention job, run by ``voicerail serve`` on a schedule.

Rules:

1. Every ``every_s`` the job applies the deployment file's retention
   (``compliance/stores.py`` rule 3) in a worker thread, writes an audit entry
   with its receipt (actor ``system``), and signs the audit log's head when a
   key is configured (``compliance/audit.py`` rule 2).
2. With several worker processes only worker 0 runs it (the caller decides).
3. A failed run is logged and retried at the next period; it never stops the
   server. Waiting uses the injected clock's sleep, so tests run it with a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.stores import Receipt, apply_retention
from voicerail.errors import StoreError

log = logging.getLogger(__name__)


class RetentionJob:
    """Rule 1 for one data directory.

    Args:
        days: data class → days kept (``RetentionPolicy.days()``).
        data_dir: the stores' directory.
        every_s: seconds between runs.
        wall: Unix time now, seconds.
        sleep: waits a number of seconds (``asyncio.sleep`` in production).
        database_url: a PostgreSQL event store and outbox to apply it to as well.
    """

    def __init__(
        self,
        days: dict[str, float],
        data_dir: Path,
        *,
        every_s: float,
        wall: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        database_url: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.days = days
        self.data_dir = data_dir
        self.every_s = every_s
        self._wall = wall
        self._sleep = sleep
        self.runs = 0

    def run_once(self) -> Receipt:
        """One run (blocking: call it in a thread).

        Raises:
            StoreError: a store failed.
        """
        now = self._wall()
        receipt = apply_retention(self.days, self.data_dir, now=now)
        if self.database_url:
            from voicerail.compliance.stores_pg import apply_retention_pg

            for store, count in apply_retention_pg(
                self.days, self.database_url, now=now
            ).removed.items():
                receipt.add(store, count)
        audit = AuditLog(self.data_dir / "audit.sqlite3")
        try:
            audit.append("system", "retention", str(self.data_dir), receipt.removed, at_wall=now)
            audit.digest(at_wall=now)
        finally:
            audit.close()
        self.runs += 1
        return receipt

    async def run(self) -> None:
        """Run forever (until cancelled), rule 3."""
        while True:
            try:
                receipt = await asyncio.to_thread(self.run_once)
                log.info("retention removed %d rows", receipt.total)
            except StoreError as exc:
                log.warning("retention run failed: %s", exc)
            await self._sleep(self.every_s)


def chain_lifespan(app: Any, job: RetentionJob) -> None:
    """Run ``job`` inside a Starlette app's existing lifespan."""
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        task = asyncio.create_task(job.run(), name="retention")
        try:
            async with previous(app_) as state:
                yield state
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.router.lifespan_context = lifespan
