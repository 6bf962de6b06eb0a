"""A call survives its worker: kill -9 mid-booking, the call resumes on the other
worker from Redis and books once; a drained worker's new calls go to the other.

Real ``voicerail serve --workers 2`` with the embedded models and a real Redis,
rung as Twilio rings it (the voice webhook, the stream, the ``<Connect action>``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from voicerail.demo import demo_turns
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.state.redis_store import RedisStateStore
from voicerail.state.session import SessionState
from voicerail.testing.callers import opening_hours_turn
from voicerail.testing.server import call_row_when, media_url, serve_subprocess, worker_pids

pytestmark = pytest.mark.slow


def caller_for(base_url: str) -> SimulatedTwilioCall:
    return SimulatedTwilioCall(media_url(base_url), voice_url=f"{base_url}/twilio/voice")


async def state_when(redis_url: str, call_sid: str, ready, timeout_s: float = 90.0):
    """The call's state in Redis once ``ready(state)`` holds."""
    states = RedisStateStore(redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            state = await states.load_by_call_sid(call_sid)
            if state is not None and ready(state):
                return state
            await asyncio.sleep(0.05)
    finally:
        await states.aclose()
    raise AssertionError(f"the state of {call_sid} never met the condition")


def gave_the_day(state: SessionState) -> bool:
    """The agent has answered the day and time, and now asks for the name."""
    return "day" in state.dialog.get("slots", {}) and state.dialog.get("awaiting") == "name"


def bookings(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "bookings.sqlite3") as db:
        return db.execute("SELECT booking_id, idempotency_key FROM bookings").fetchall()


async def test_a_worker_killed_mid_booking_hands_the_call_to_the_other_which_books_once(
    tmp_path, caller_audio, redis_url
):
    """SIGKILL between the day and the name: Twilio (simulated) asks the connect
    action, a fresh stream lands on the live worker, which restores the call from
    Redis, recaps, and the caller finishes the booking on the same call id."""
    data_dir = tmp_path / "server"
    args = ["--workers", "2", "--redis-url", redis_url]
    with serve_subprocess(args, data_dir=data_dir) as (base_url, proc):
        worker_pids(base_url, 2)
        caller = caller_for(base_url)
        call = asyncio.create_task(caller.run(demo_turns(caller_audio)))
        # The caller heard the question after the day (script turn 3 of 6 answered)
        # and starts giving the name: the worker dies now.
        while caller.turns_answered < 3 and not call.done():
            await asyncio.sleep(0.02)
        before = await state_when(redis_url, caller.result.call_sid, gave_the_day)
        killed = int(before.worker.split(":")[-2])
        os.kill(killed, signal.SIGKILL)
        result = await asyncio.wait_for(call, 180)
        row = await call_row_when(base_url, result.call_sid, lambda r: r["outcome"] is not None)
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            timeline = (await client.get(f"/api/calls/{row['call_id']}")).json()["events"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 90) == 0
    assert caller.streams_opened == 2 and caller.close_codes[0] == 1006, caller.close_codes
    assert row["call_id"] == before.call_id and row["outcome"] == "completed", row
    assert row["worker_pid"] != killed and row["data"]["streams"] == 2, row
    [(booking_id, key)] = bookings(data_dir)
    assert row["data"]["booking_id"] == booking_id and key == f"{before.call_id}:book:1"
    kinds = [e["kind"] for e in timeline]
    assert kinds.count("CallResumed") == 1 and kinds.count("CallEnded") == 1, kinds
    pids = [e["data"]["worker_pid"] for e in timeline if e["kind"] == "StreamStarted"]
    assert len(pids) == 2 and pids[0] == killed and pids[1] != killed, pids
    [resumed] = [e for e in timeline if e["kind"] == "CallResumed"]
    assert resumed["data"]["previous_worker"] == before.worker, resumed
    recap = [
        e for e in timeline if e["kind"] == "DialogDecided" and e["data"]["reason"] == "resumed"
    ]
    assert len(recap) == 1 and recap[0]["data"]["awaiting"] == "name", recap


async def test_a_call_arriving_during_a_drain_goes_to_the_other_worker(tmp_path, caller_audio):
    """SIGTERM to one worker with a call in progress: the call finishes there; new
    calls are all answered by the other worker; the drained worker is replaced."""
    data_dir = tmp_path / "server"
    args = ["--workers", "2", "--drain-timeout", "120"]
    with serve_subprocess(args, data_dir=data_dir) as (base_url, proc):
        worker_pids(base_url, 2)
        first = caller_for(base_url)
        call = asyncio.create_task(first.run(demo_turns(caller_audio)))
        row = await call_row_when(base_url, first.result.call_sid, lambda r: r["in_progress"])
        draining = row["worker_pid"]
        os.kill(draining, signal.SIGTERM)
        await asyncio.sleep(0.5)  # the drain begins: that worker closes its listener
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
            seen = set()
            for _ in range(20):
                client.headers["Connection"] = "close"  # a new connection each time
                seen.add((await client.get("/healthz")).json()["worker_pid"])
        assert draining not in seen and len(seen) == 1, (draining, seen)
        second = await caller_for(base_url).run([opening_hours_turn(caller_audio)])
        row2 = await call_row_when(base_url, second.call_sid, lambda r: r["ended_at"] is not None)
        assert row2["worker_pid"] != draining and row2["outcome"] != "failed", row2
        result = await call
        done = await call_row_when(base_url, result.call_sid, lambda r: r["outcome"] is not None)
        assert done["outcome"] == "completed" and done["worker_pid"] == draining, done
        worker_pids(base_url, 2)  # the drained worker was replaced
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 90) == 0
