"""Cost of writing a call's state once per turn: in memory and in a real Redis.

Each simulated call writes its state after every turn (a growing turn history,
the dialog's slots), as the call driver does, through ``StateStore.save``; the
time of each write is taken around the ``await``. Calls run concurrently, so the
Redis figures include queueing on one connection pool, as in a worker serving
several calls. A local ``redis-server`` is started in a temporary directory
(``testing/redis.py``).

Usage: ``.venv/bin/python bench/state_store.py [--calls 50] [--turns 12] [--turn-gap 0.5]
[--rounds 3]`` (a real turn takes seconds; 0.5 s between writes is a faster load
than calls make). Prints p50, p99 and max milliseconds per write for each store.

Redis is measured twice, side by side, in alternating rounds so both see the same
machine load: ``before`` serializes with ``dataclasses.asdict`` (the state's JSON
until issue 12's resume work) and parses replies with redis-py's pure-Python
parser; ``after`` is the store as shipped (field-by-field JSON, the hiredis parser
when installed, as the ``redis`` extra does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict
from typing import Any

from redis.asyncio.connection import _AsyncRESP2Parser

from voicerail.state import session as session_module
from voicerail.state.redis_store import RedisStateStore
from voicerail.state.session import MemoryStateStore, SessionState, StateStore, TurnRecord
from voicerail.testing.redis import temporary_redis


async def one_call(
    store: StateStore, call_id: str, turns: int, times_ms: list[float], gap_s: float
) -> None:
    await asyncio.sleep(random.Random(call_id).uniform(0, gap_s))  # calls start apart
    state = SessionState(call_id=call_id, call_sid=f"CA{call_id}", providers={"stt": "whisper"})
    for index in range(1, turns + 1):
        turn = TurnRecord(
            index,
            "Next Tuesday at three in the afternoon, for Maria Lopez.",
            "Tuesday at 3 PM for Maria Lopez. Shall I book it?",
            "Tuesday at 3 PM for Maria Lopez.",
        )
        slots = {"date": "2026-12-08", "time": "15:00", "name": "Maria Lopez"}
        state = state.next_version(
            turns=(*state.turns, turn), dialog={"node": "book", "slots": slots}
        )
        started = time.perf_counter()
        await store.save(state)
        times_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(gap_s)  # the rest of the turn: writes interleave across calls


async def measure(
    store: StateStore, calls: int, turns: int, gap_s: float, name: str = "vr"
) -> list[float]:
    times_ms: list[float] = []
    await asyncio.gather(
        *(one_call(store, f"{name}_{k}", turns, times_ms, gap_s) for k in range(calls))
    )
    return times_ms


def report(name: str, times_ms: list[float]) -> None:
    q = statistics.quantiles(times_ms, n=100)
    print(
        f"{name:13s} writes={len(times_ms):5d}  p50={q[49]:.3f} ms  p99={q[98]:.3f} ms"
        f"  max={max(times_ms):.3f} ms"
    )


def asdict_json(self: SessionState) -> str:
    """The state's JSON as it was built before (same text, slower)."""
    body = asdict(self)
    body["schema"] = session_module.STATE_SCHEMA
    return json.dumps(body, separators=(",", ":"))


async def redis_round(url: str, args: argparse.Namespace, before: bool, tag: str) -> list[float]:
    """One round on a fresh store: ``before`` (asdict JSON, Python parser) or as shipped."""
    store = RedisStateStore(url)
    shipped = SessionState.to_json
    if before:
        pool: Any = store._redis.connection_pool  # the bench's one look inside
        pool.connection_kwargs["parser_class"] = _AsyncRESP2Parser
        SessionState.to_json = asdict_json  # type: ignore[method-assign]
    try:
        await measure(store, 2, 2, 0.0, name=f"warm{tag}")  # connect, load the script
        return await measure(store, args.calls, args.turns, args.turn_gap, name=tag)
    finally:
        SessionState.to_json = shipped  # type: ignore[method-assign]
        await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument(
        "--turn-gap", type=float, default=0.5, help="seconds between a call's writes"
    )
    args = parser.parse_args()
    memory = MemoryStateStore(monotonic=time.monotonic)
    report("memory", await measure(memory, args.calls, args.turns, args.turn_gap))
    times: dict[bool, list[float]] = {True: [], False: []}
    with temporary_redis() as url:
        for index in range(args.rounds):
            for before in (True, False):
                tag = f"{'b' if before else 'a'}{index}"
                times[before] += await redis_round(url, args, before, tag)
    report("redis before", times[True])
    report("redis after", times[False])


if __name__ == "__main__":
    asyncio.run(main())
