"""A second stream for a live CallSid carries the call on: same call id, restored
dialog, a recap, and the first stream closed (session/resume.py, state/resume.py)."""

from __future__ import annotations

import asyncio
import time

from starlette.testclient import TestClient

import voicerail.wire.twilio as twilio
from voicerail.events.model import Event, EventKind
from voicerail.events.store import SQLiteEventStore, next_seq_block
from voicerail.server.app import create_app
from voicerail.session.resume import StreamRegistry, take_over
from voicerail.state.session import MemoryStateStore, SessionState
from voicerail.testing.doubles import KeyCountingDialog, receive_until_mark, resumable_runtime


def wait_for_version(store: MemoryStateStore, call_sid: str, version: int) -> SessionState:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        state = asyncio.run(store.load_by_call_sid(call_sid))
        if state is not None and state.version >= version:
            return state
        time.sleep(0.01)
    raise AssertionError(f"state of {call_sid} never reached version {version}")


def test_a_second_stream_takes_the_call_over_and_the_first_is_closed(tmp_path):
    runtime = resumable_runtime(tmp_path)
    store = runtime.state
    assert isinstance(store, MemoryStateStore)
    with (
        TestClient(create_app(runtime)) as client,
        client.websocket_connect("/twilio/media") as first,
    ):
        first.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
        first.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
        receive_until_mark(first)
        first.send_text(twilio.serialize_inbound(twilio.DTMF(2, "MZ1", "inbound_track", "5")))
        receive_until_mark(first)
        before = wait_for_version(store, "CA1", 2)
        with client.websocket_connect("/twilio/media") as second:
            second.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            start = twilio.build_start("MZ2", "CA1", custom_parameters={"resume": "2"})
            second.send_text(twilio.serialize_inbound(start))
            while (message := first.receive())["type"] != "websocket.close":
                pass
            assert message["code"] == 1000
            receive_until_mark(second)
            second.send_text(twilio.serialize_inbound(twilio.Stop(3, "MZ2", "AC1", "CA1")))
    events = runtime.events
    [call] = events.calls()
    timeline = events.events(call.call_id)
    events.close()
    assert call.call_id == before.call_id and call.stream_sid == "MZ2" and call.outcome
    kinds = [e.kind for e in timeline]
    assert kinds.count(EventKind.STREAM_STARTED) == 2 and kinds.count(EventKind.CALL_ENDED) == 1
    [resumed] = [e for e in timeline if e.kind is EventKind.CALL_RESUMED]
    assert resumed.data["stream"] == 2 and resumed.data["worker_pid"] == runtime.worker.pid
    recap = [e.pii.get("agent_text") for e in timeline if e.data.get("reason") == "resumed"]
    assert recap == ["Sorry, I lost you. 1 keys so far."]
    state = asyncio.run(store.load_by_call_sid("CA1"))
    assert state is not None and state.resumes == 1 and state.dialog["keys"] == 1


async def test_take_over_claims_the_state_so_the_old_writer_is_refused(tmp_path):
    runtime = resumable_runtime(tmp_path)
    store = runtime.state
    assert store is not None
    await store.save(SessionState("vr_1", version=1, call_sid="CA1", worker="h:1:1",
                                  dialog={"node": "keys", "keys": 2}))  # fmt: skip
    resumed = await take_over(runtime, "CA1")
    assert resumed is not None and resumed.previous_worker == "h:1:1"
    assert resumed.state.version == 2 and resumed.state.worker == str(runtime.worker)
    assert isinstance(resumed.dialog, KeyCountingDialog) and resumed.dialog.keys == 2
    stale = SessionState("vr_1", version=2, call_sid="CA1", worker="h:1:1")
    try:
        await store.save(stale)
    except Exception as exc:  # the old worker's next write
        assert type(exc).__name__ == "StateConflict"
    else:
        raise AssertionError("the old worker's write was accepted")
    runtime.events.close()


async def test_no_state_or_an_ended_dialog_is_a_new_call(tmp_path):
    runtime = resumable_runtime(tmp_path)
    assert runtime.state is not None
    assert await take_over(runtime, "CA404") is None
    await runtime.state.save(SessionState("vr_2", version=1, call_sid="CA2",
                                          dialog={"node": "bye", "ended": True}))  # fmt: skip
    assert await take_over(runtime, "CA2") is None
    runtime.events.close()


def test_events_of_a_carried_on_call_continue_in_a_fresh_seq_block(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    assert store.continue_call("vr_new") == 0
    for _ in range(3):
        store.append(Event("vr_old", EventKind.MARK_PLAYED, at_wall=1.0, at_mono=1.0))
    assert store.continue_call("vr_old") == 100_000
    stored = store.append(Event("vr_old", EventKind.MARK_PLAYED, at_wall=2.0, at_mono=2.0))
    assert stored.seq == 100_000
    assert [e.seq for e in store.events("vr_old")] == [0, 1, 2, 100_000]
    store.close()
    assert next_seq_block(None) == 0 and next_seq_block(41) == 100_000
    assert next_seq_block(100_003) == 200_000


class Stream:
    def __init__(self) -> None:
        self.taken_over = False

    def take_over(self) -> None:
        self.taken_over = True


def test_the_registry_keeps_one_stream_per_call_sid():
    registry = StreamRegistry()
    old, new = Stream(), Stream()
    assert registry.started("CA1", old) is None
    assert registry.started("CA1", new) is old and old.taken_over and not new.taken_over
    registry.ended("CA1", old)  # the replaced stream ending forgets nothing
    assert len(registry) == 1
    registry.ended("CA1", new)
    assert len(registry) == 0
    assert registry.started(None, old) is None


async def test_a_row_the_sweep_closed_is_reopened_with_its_start_and_booking_kept(tmp_path):
    """The lost-call sweep ran first: the resume reopens the row and says so."""
    from voicerail.events.store import CallRecord

    runtime = resumable_runtime(tmp_path)
    assert runtime.state is not None
    closed = CallRecord("vr_1", "keys", 100.0, 160.0, "failed", "worker_lost", call_sid="CA1",
                        data={"booking_id": "BK-1", "worker": "h:1:1"})  # fmt: skip
    runtime.events.save_call(closed)
    dialog = {"node": "keys", "keys": 0}
    stored = SessionState("vr_1", 1, "CA1", "h:1:1", dialog, booking_id="BK-1")
    await runtime.state.save(stored)
    resumed = await take_over(runtime, "CA1")
    assert resumed is not None and resumed.reopened
    row = resumed.record("MZ2", "keys", runtime.worker)
    assert (row.started_at, row.ended_at, row.outcome, row.error) == (100.0, None, None, None)
    assert row.data["booking_id"] == "BK-1" and row.data["worker_pid"] == runtime.worker.pid
    assert resumed.event_data(runtime.worker, 3)["reopened"] is True
    runtime.events.close()
