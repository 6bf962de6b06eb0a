"""Call state stores, in memory and in a real Redis: versioned, per call, with a TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicerail.errors import StateConflict, StoreError
from voicerail.state.redis_store import RedisStateStore
from voicerail.state.session import (
    MemoryStateStore,
    SessionState,
    StateStore,
    TurnRecord,
    check_write,
)
from voicerail.testing.clock import FakeClock


def booking_state(call_id: str = "vr_1", call_sid: str = "CA1") -> SessionState:
    return SessionState(
        call_id=call_id,
        call_sid=call_sid,
        dialog={"node": "book", "slots": {"date": "2026-12-08", "time": "15:00"}},
        turns=(TurnRecord(1, "Tuesday at three", "Tuesday at 3 PM. Your name?", "Tuesday at"),),
        providers={"stt": "faster-whisper", "tts": "piper"},
    )


def test_only_the_next_version_may_be_written():
    check_write("vr_1", 0, 1)
    check_write("vr_1", 4, 5)
    with pytest.raises(StateConflict) as caught:
        check_write("vr_1", 5, 5)
    assert (caught.value.expected_version, caught.value.stored_version) == (4, 5)
    assert str(caught.value) == "call vr_1: state write based on version 4, store has version 5"


def test_state_round_trips_through_json_and_refuses_another_calls_state():
    state = booking_state().next_version(outcome="completed", booking_id="bk_1")
    assert SessionState.from_json(state.to_json(), call_id="vr_1") == state
    with pytest.raises(StoreError, match="names another call"):
        SessionState.from_json(state.to_json(), call_id="vr_2")
    with pytest.raises(StoreError, match="unreadable state"):
        SessionState.from_json("{}", call_id="vr_1")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore(monotonic=FakeClock().monotonic)
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStateStore(url, prefix=f"t{id(request)}:")
    yield redis_store
    await redis_store.aclose()


async def test_writes_are_versioned_and_a_stale_write_is_refused(store: StateStore):
    first = booking_state().next_version()
    await store.save(first)
    second = first.next_version(outcome="completed", booking_id="bk_1")
    await store.save(second)
    with pytest.raises(StateConflict) as caught:
        await store.save(first.next_version(outcome="abandoned"))  # based on version 1
    assert caught.value.stored_version == 2
    with pytest.raises(StateConflict):
        await store.save(booking_state())  # version 0 is never a write
    assert await store.load("vr_1") == second


async def test_reads_never_cross_calls(store: StateStore):
    await store.save(booking_state("vr_a", "CAa").next_version())
    await store.save(booking_state("vr_b", "CAb").next_version(dialog={"node": "other"}))
    a, b = await store.load("vr_a"), await store.load("vr_b")
    assert a is not None and b is not None
    assert (a.call_id, b.call_id) == ("vr_a", "vr_b")
    assert a.dialog["node"] == "book" and b.dialog == {"node": "other"}
    found = await store.load_by_call_sid("CAb")
    assert found is not None and found.call_id == "vr_b"
    assert await store.load("vr_c") is None
    assert await store.load_by_call_sid("CAc") is None


async def test_two_writers_racing_on_one_call_leave_exactly_one_winner(store: StateStore):
    base = booking_state().next_version()
    await store.save(base)
    attempts = [base.next_version(worker=f"w{k}") for k in range(8)]
    results = await asyncio.gather(*(store.save(s) for s in attempts), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, StateConflict) for r in results if r is not None)


async def test_memory_state_expires_after_its_ttl():
    clock = FakeClock()
    store = MemoryStateStore(ttl_s=60.0, monotonic=clock.monotonic)
    await store.save(booking_state().next_version())
    clock.advance(59.0)
    assert await store.load("vr_1") is not None
    clock.advance(1.0)
    assert await store.load("vr_1") is None
    await store.save(booking_state().next_version())  # expired: version 1 again


async def test_redis_keys_carry_the_ttl_and_every_write_renews_it(redis_url: str):
    store = RedisStateStore(redis_url, ttl_s=30.0, prefix="ttl:")
    try:
        await store.save(booking_state().next_version())
        left = await store.ttl_s_left("vr_1")
        assert left is not None and 29.0 < left <= 30.0
        assert await store.ttl_s_left("vr_none") is None
    finally:
        await store.aclose()


async def test_an_unreachable_redis_is_a_store_error_not_a_crash():
    store = RedisStateStore("redis://127.0.0.1:1/0", timeout_s=0.2)
    try:
        with pytest.raises(StoreError, match="state read failed"):
            await store.load("vr_1")
        with pytest.raises(StoreError, match="state write failed"):
            await store.save(booking_state().next_version())
    finally:
        await store.aclose()
