"""The state recorder: once per turn, in order, heard text corrected, failures contained."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

import voicerail.wire.twilio as twilio
from voicerail.errors import StoreError
from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import create_app
from voicerail.session.runtime import Runtime
from voicerail.state.recorder import CallStateRecorder
from voicerail.state.session import MemoryStateStore, SessionState
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS, receive_until_mark


def recorder_over(store) -> CallStateRecorder:
    return CallStateRecorder(store, SessionState("vr_1", call_sid="CA1"), wall=lambda: 1000.0)


async def test_each_turn_is_one_write_in_turn_order_with_the_outcome_so_far():
    store = MemoryStateStore(monotonic=FakeClock().monotonic)
    recorder = recorder_over(store)
    recorder.turn(caller_text="", agent_text="Hello.", outcome=None, booking_id=None)
    recorder.turn(
        caller_text="book Tuesday", agent_text="Booked.", outcome="completed", booking_id="bk_1"
    )
    await recorder.aclose()
    state = await store.load("vr_1")
    assert state is not None and state.version == 2 and recorder.writes == 2
    assert [t.agent_text for t in state.turns] == ["Hello.", "Booked."]
    assert (state.outcome, state.booking_id) == ("completed", "bk_1")


async def test_a_barge_in_corrects_what_the_caller_heard_in_the_next_write():
    store = MemoryStateStore(monotonic=FakeClock().monotonic)
    recorder = recorder_over(store)
    recorder.turn(caller_text="", agent_text="Tuesday at 3 PM. Shall I book it?", outcome=None,
                  booking_id=None)  # fmt: skip
    recorder.heard("Tuesday at 3 PM.")
    recorder.turn(caller_text="yes", agent_text="Booked.", outcome=None, booking_id=None)
    await recorder.aclose()
    state = await store.load("vr_1")
    assert state is not None
    assert [t.heard_text for t in state.turns] == ["Tuesday at 3 PM.", "Booked."]


class FlakyStore(MemoryStateStore):
    """Fails its first write, then works."""

    def __init__(self) -> None:
        super().__init__(monotonic=FakeClock().monotonic)
        self.failures = 1

    async def save(self, state: SessionState) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("redis down")
        await super().save(state)


async def test_a_failed_write_is_skipped_over_and_the_next_one_is_stored():
    store = FlakyStore()
    recorder = recorder_over(store)
    recorder.turn(caller_text="", agent_text="Hello.", outcome=None, booking_id=None)
    recorder.turn(caller_text="hi", agent_text="Yes?", outcome=None, booking_id=None)
    await recorder.aclose()
    state = await store.load("vr_1")
    assert state is not None and state.version == 1 and len(state.turns) == 2


async def test_once_another_worker_wrote_the_call_this_recorder_stops():
    store = MemoryStateStore(monotonic=FakeClock().monotonic)
    await store.save(SessionState("vr_1", version=1, worker="other"))
    recorder = recorder_over(store)
    recorder.turn(caller_text="", agent_text="Hello.", outcome=None, booking_id=None)
    await recorder.aclose()
    recorder.turn(caller_text="x", agent_text="y", outcome=None, booking_id=None)
    await asyncio.sleep(0)
    state = await store.load("vr_1")
    assert state is not None and state.worker == "other" and recorder.writes == 0


async def test_a_conflict_tells_the_stream_once_so_it_stops():
    store = MemoryStateStore(monotonic=FakeClock().monotonic)
    await store.save(SessionState("vr_1", version=1, worker="other"))
    told: list[str] = []
    recorder = CallStateRecorder(
        store, SessionState("vr_1"), wall=lambda: 1.0, on_conflict=lambda: told.append("stop")
    )
    recorder.turn(caller_text="", agent_text="Hello.", outcome=None, booking_id=None)
    recorder.turn(caller_text="x", agent_text="y", outcome=None, booking_id=None)
    await recorder.aclose()
    assert told == ["stop"]


def test_a_call_writes_its_state_once_per_turn_from_the_driver(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    state_store = MemoryStateStore(monotonic=FakeClock().monotonic)
    runtime = Runtime(
        agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=events, state=state_store
    )
    with TestClient(create_app(runtime)) as client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
        ws.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
        receive_until_mark(ws)  # the greeting's audio, then its mark
        ws.send_text(twilio.serialize_inbound(twilio.DTMF(3, "MZ1", "inbound_track", "5")))
        ws.send_text(twilio.serialize_inbound(twilio.Stop(4, "MZ1", "AC" + "0" * 32, "CA1")))
    [call] = events.calls()
    events.close()
    state = asyncio.run(state_store.load_by_call_sid("CA1"))
    assert state is not None and state.call_id == call.call_id
    assert state.worker == str(runtime.worker) and state.providers["tts"] == "silent"
    assert state.turns[0].agent_text == "Hello."
    assert state.version == len(state.turns)  # one write per turn
