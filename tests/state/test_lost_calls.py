"""Calls left open by a dead worker are closed as failed, worker_lost; no others."""

from __future__ import annotations

import socket

from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.state.lost_calls import WORKER_LOST, close_lost_calls
from voicerail.state.worker import WorkerIdentity
from voicerail.testing.clock import FakeClock

HOST = socket.gethostname()
DEAD = WorkerIdentity(HOST, 111, 5)
LIVE = WorkerIdentity(HOST, 222, 6)


def alive(worker: WorkerIdentity) -> bool | None:
    return {DEAD: False, LIVE: True}.get(worker)


def open_call(store: SQLiteEventStore, call_id: str, worker: WorkerIdentity | None) -> None:
    data = {"worker": str(worker), "worker_pid": worker.pid} if worker else {}
    store.save_call(CallRecord(call_id, "clinic", 10.0, data=data))
    store.append(Event(call_id, EventKind.CALL_STARTED, at_wall=10.0, at_mono=1.0))


def test_only_the_open_calls_of_a_dead_worker_are_closed(tmp_path):
    path = tmp_path / "e.sqlite3"
    store = SQLiteEventStore(path)
    open_call(store, "lost", DEAD)
    open_call(store, "running", LIVE)
    open_call(store, "legacy", None)
    open_call(store, "elsewhere", WorkerIdentity(HOST + "-b", 111, 5))
    store.save_call(CallRecord("done", "clinic", 1.0, 2.0, "completed", data={"worker": str(DEAD)}))
    store.close()

    store = SQLiteEventStore(path)  # rule 2: opened after the worker died
    closed = close_lost_calls(
        store, clock=FakeClock(start_s=50.0, wall_offset_s=1000.0), alive=alive
    )
    assert closed == ["lost"]
    call = store.call("lost")
    assert (call.outcome, call.error, call.ended_at) == ("failed", WORKER_LOST, 1050.0)
    assert call.data["worker_pid"] == 111
    ended = store.events("lost")[-1]
    assert ended.kind == EventKind.CALL_ENDED and ended.seq == 1
    assert ended.outcome == "failed" and ended.data["ended_by"] == WORKER_LOST
    for call_id in ["running", "legacy", "elsewhere"]:
        assert store.call(call_id).outcome is None, call_id
    assert store.call("done").outcome == "completed"
    store.close()


def test_a_second_sweep_finds_nothing_left_to_close(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.sqlite3")
    open_call(store, "lost", DEAD)
    assert close_lost_calls(store, alive=alive) == ["lost"]
    assert close_lost_calls(store, alive=alive) == []
    assert [e.kind for e in store.events("lost")].count(EventKind.CALL_ENDED) == 1
    store.close()
