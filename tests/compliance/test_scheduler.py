"""The scheduled retention job: runs each period, audits each run, survives a failure."""

from __future__ import annotations

import asyncio

import pytest

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.scheduler import RetentionJob
from voicerail.compliance.stores import DAY_S
from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore


async def test_the_job_runs_every_period_and_audits_each_run(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    store.save_call(CallRecord(call_id="vr_old", agent="a", started_at=0.0))
    store.append(Event("vr_old", EventKind.CALL_STARTED, 0.0, 0.0))
    store.close()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise asyncio.CancelledError

    job = RetentionJob({"events": 30}, tmp_path, every_s=3600.0, wall=lambda: 40 * DAY_S,
                       sleep=sleep)  # fmt: skip
    with pytest.raises(asyncio.CancelledError):
        await job.run()
    assert job.runs == 2 and waits == [3600.0, 3600.0]
    entries = AuditLog(tmp_path / "audit.sqlite3").entries()
    assert [e.actor for e in entries] == ["system", "system"]
    assert entries[0].detail["events.sqlite3: calls"] == 1
    assert entries[1].detail["events.sqlite3: calls"] == 0


async def test_a_failed_run_is_retried_next_period(tmp_path, caplog):
    (tmp_path / "events.sqlite3").write_text("not a database")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise asyncio.CancelledError

    job = RetentionJob({"events": 30}, tmp_path, every_s=60.0, wall=lambda: 0.0, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await job.run()
    assert waits == [60.0] and job.runs == 0
    assert "retention run failed" in caplog.text
