"""Cost of writing a call's state once per turn: in memory and in a real Redis.

Each simulated call writes its state after every turn (a growing turn history,
the dialog's slots), as the call driver does, through ``StateStore.save``; the
time of each write is taken around the ``await``. Calls run concurrently, so the
Redis figures include queueing on one connection pool, as in a worker serving
several calls. A local ``redis-server`` is started in a temporary directory
(``testing/redis.py``).

Usage: ``.venv/bin/python bench/state_store.py [--calls 50] [--turns 12] [--turn-gap 0.5]``
(a real turn takes seconds; 0.5 s between writes is a faster load than calls make).
Prints p50, p99 and max milliseconds per write for each store.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

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
        f"{name:8s} writes={len(times_ms):5d}  p50={q[49]:.3f} ms  p99={q[98]:.3f} ms"
        f"  max={max(times_ms):.3f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument(
        "--turn-gap", type=float, default=0.5, help="seconds between a call's writes"
    )
    args = parser.parse_args()
    memory = MemoryStateStore(monotonic=time.monotonic)
    report("memory", await measure(memory, args.calls, args.turns, args.turn_gap))
    with temporary_redis() as url:
        store = RedisStateStore(url)
        try:
            await measure(store, 2, 2, 0.0, name="warm")  # connect and load the script first
            report("redis", await measure(store, args.calls, args.turns, args.turn_gap))
        finally:
            await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
