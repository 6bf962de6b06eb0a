"""Several workers on one port, SIGTERM drains, a killed worker's call is closed as lost.

Real ``voicerail serve`` processes with the embedded models, called as Twilio would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from voicerail.demo import demo_turns
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.state.redis_store import RedisStateStore
from voicerail.testing.callers import opening_hours_turn
from voicerail.testing.server import call_row_when, media_url, serve_subprocess, worker_pids

pytestmark = pytest.mark.slow


def stored_call(data_dir: Path, call_sid: str) -> tuple[dict, list[dict]]:
    """The call row and its CallEnded event's data, read from the stopped server's store."""
    with sqlite3.connect(data_dir / "events.sqlite3") as db:
        row = db.execute(
            "SELECT call_id, outcome, error, data FROM calls WHERE call_sid = ?", (call_sid,)
        ).fetchone()
        ended = db.execute(
            "SELECT data FROM events WHERE call_id = ? AND kind = 'CallEnded'", (row[0],)
        ).fetchall()
    call = {"call_id": row[0], "outcome": row[1], "error": row[2], "data": json.loads(row[3])}
    return call, [json.loads(e[0]) for e in ended]


async def test_two_workers_answer_calls_on_one_port_with_summed_metrics(
    tmp_path, caller_audio, redis_url
):
    """Four calls at once on two workers with Redis: each row names its worker, each
    call's state is in Redis (one version per turn), /metrics sums both workers."""
    data_dir = tmp_path / "server"
    args = ["--workers", "2", "--redis-url", redis_url]
    with serve_subprocess(args, data_dir=data_dir) as (base_url, _):
        pids = worker_pids(base_url, 2)
        turn = opening_hours_turn(caller_audio)
        callers = [SimulatedTwilioCall(media_url(base_url)) for _ in range(4)]
        results = await asyncio.gather(*(c.run([turn]) for c in callers))
        rows = [
            await call_row_when(base_url, r.call_sid, lambda row: row["ended_at"] is not None)
            for r in results
        ]
        assert all(row["worker_pid"] in pids for row in rows), (rows, pids)
        assert all(row["outcome"] != "failed" for row in rows), rows
        states = RedisStateStore(redis_url)
        try:
            for row in rows:
                state = await states.load(row["call_id"])
                assert state is not None, row
                assert state.version == len(state.turns) >= 2  # greeting + the answer
                assert state.call_sid == row["call_sid"] and state.dialog["node"]
                assert state.worker.split(":")[-2] == str(row["worker_pid"])
        finally:
            await states.aclose()
        metrics = ""
        for _ in range(20):  # whichever worker answers, the counts are both workers'
            metrics = httpx.get(f"{base_url}/metrics", timeout=5.0).text
            ended = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("voicerail_calls_total{")
            )
            assert ended == 4, metrics


async def test_sigterm_during_a_call_lets_it_finish_refuses_new_calls_and_exits_0(
    tmp_path, caller_audio
):
    """The booking call in progress at SIGTERM completes; readiness is off; exit status 0."""
    data_dir = tmp_path / "server"
    with serve_subprocess(["--drain-timeout", "120"], data_dir=data_dir) as (base_url, proc):
        caller = SimulatedTwilioCall(media_url(base_url))
        call = asyncio.create_task(caller.run(demo_turns(caller_audio)))
        await call_row_when(base_url, caller.result.call_sid, lambda row: row["in_progress"])
        proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
            ready = None
            for _ in range(50):
                ready = await client.get("/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready is not None and ready.json()["draining"], ready.text
            late = await client.post("/twilio/voice", data={"CallSid": "CAlate"})
            assert "<Connect" not in late.text, late.text  # refused: the overflow TwiML
        result = await call
        assert await asyncio.to_thread(proc.wait, 60) == 0
    stored, ended = stored_call(data_dir, result.call_sid)
    assert stored["outcome"] == "completed", stored
    assert "booking_id" in stored["data"], stored
    assert [e["ended_by"] for e in ended] == ["agent"]


async def test_a_call_past_the_drain_deadline_is_failed_by_shutdown_not_abandoned(
    tmp_path, caller_audio
):
    """At the drain deadline the worker ends the call as failed, shutdown; exit status 0."""
    data_dir = tmp_path / "server"
    with serve_subprocess(["--drain-timeout", "0.5"], data_dir=data_dir) as (base_url, proc):
        caller = SimulatedTwilioCall(media_url(base_url))
        call = asyncio.create_task(caller.run(demo_turns(caller_audio)))
        await call_row_when(base_url, caller.result.call_sid, lambda row: row["in_progress"])
        proc.send_signal(signal.SIGTERM)
        result = await call
        assert await asyncio.to_thread(proc.wait, 60) == 0
    stored, ended = stored_call(data_dir, result.call_sid)
    assert (stored["outcome"], stored["error"]) == (
        "failed",
        "worker shutdown: drain deadline passed",
    ), stored
    assert [e["ended_by"] for e in ended] == ["shutdown"]


async def test_a_call_whose_worker_is_killed_is_closed_as_worker_lost(tmp_path, caller_audio):
    """kill -9 of the worker mid-call: the supervisor closes the call as failed,
    worker_lost, starts a new worker, and the next call is answered."""
    data_dir = tmp_path / "server"
    with serve_subprocess(["--workers", "2"], data_dir=data_dir) as (base_url, proc):
        worker_pids(base_url, 2)
        caller = SimulatedTwilioCall(media_url(base_url))
        call = asyncio.create_task(caller.run(demo_turns(caller_audio)))
        row = await call_row_when(base_url, caller.result.call_sid, lambda row: row["in_progress"])
        os.kill(row["worker_pid"], signal.SIGKILL)
        await call
        lost = await call_row_when(
            base_url, caller.result.call_sid, lambda row: row["outcome"] is not None
        )
        assert (lost["outcome"], lost["error"]) == ("failed", "worker_lost"), lost
        second = await SimulatedTwilioCall(media_url(base_url)).run(
            [opening_hours_turn(caller_audio)]
        )
        row2 = await call_row_when(
            base_url, second.call_sid, lambda row: row["ended_at"] is not None
        )
        assert row2["outcome"] != "failed", row2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
