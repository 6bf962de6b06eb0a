"""An accepted call is never failed by load: a resumed stream is admitted at
capacity and counted; a drain still refuses it (session/load.py rule 6,
session/resume.py admit_stream)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import voicerail.wire.twilio as twilio
from voicerail.events.model import EventKind
from voicerail.server.app import create_app
from voicerail.session.load import AdmissionConfig, Load, LoadMonitor, LoadSignals, decide
from voicerail.session.resume import admit_stream
from voicerail.state.session import SessionState
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import receive_until_mark, resumable_runtime

ACCOUNT = "AC" + "0" * 32


def full_load(**kwargs) -> Load:
    return Load(calls_in_progress=3, reserved=0, max_calls=3, signals=LoadSignals(), **kwargs)


def test_a_resumed_stream_is_admitted_full_or_overloaded_but_not_while_draining():
    config = AdmissionConfig(max_calls=3)
    assert not decide(config, full_load()).admit
    assert decide(config, full_load(), resumed=True).admit
    assert decide(config, full_load(overloaded_by="cpu 0.99>0.95"), resumed=True).admit
    assert decide(config, full_load(draining=True), resumed=True).reason == "draining"


def test_a_resumed_admission_is_counted_and_holds_no_reservation():
    monitor = LoadMonitor(AdmissionConfig(max_calls=1), monotonic=FakeClock().monotonic)
    monitor.call_started("vr_1")
    assert monitor.admit(reservation="CA2", resumed=True).admit
    monitor.call_started("vr_2", reservation="CA2")
    assert monitor.calls_in_progress == 2 and monitor.snapshot().reserved == 0
    assert not monitor.admit(reservation="CA3").admit  # new calls still wait
    assert monitor.refused == 1


async def test_admit_stream_reads_the_state_only_to_rescue_a_refusal(tmp_path):
    runtime = resumable_runtime(tmp_path)
    runtime.load = LoadMonitor(AdmissionConfig(max_calls=1), monotonic=FakeClock().monotonic)
    assert runtime.state is not None
    runtime.load.call_started("vr_other")
    await runtime.state.save(SessionState("vr_9", version=1, call_sid="CA9",
                                          dialog={"node": "keys", "keys": 1}))  # fmt: skip
    await runtime.state.save(SessionState("vr_8", version=1, call_sid="CA8",
                                          dialog={"node": "bye", "ended": True}))  # fmt: skip
    assert (await admit_stream(runtime, "CA9")).admit
    assert not (await admit_stream(runtime, "CA8")).admit  # its dialog ended: a new call
    assert not (await admit_stream(runtime, "CA404")).admit
    assert runtime.load.refused == 2
    runtime.load.draining = True
    assert (await admit_stream(runtime, "CA9")).reason == "draining"
    runtime.events.close()


def test_a_full_server_carries_a_resumed_call_on_and_still_refuses_new_ones(tmp_path):
    """The connect action's fresh stream reaches a server at its ceiling: the call
    goes on (recap, CallResumed), counted; a new call after it is refused."""
    runtime = resumable_runtime(tmp_path)
    runtime.load = LoadMonitor(AdmissionConfig(max_calls=1))
    store = runtime.state
    assert store is not None
    asyncio.run(store.save(SessionState("vr_9", version=1, call_sid="CA9",
                                        dialog={"node": "keys", "keys": 4})))  # fmt: skip
    send = twilio.serialize_inbound
    with TestClient(create_app(runtime)) as client, client.websocket_connect("/twilio/media") as a:
        a.send_text(send(twilio.Connected("Call", "1.0.0")))
        a.send_text(send(twilio.build_start("MZ1", "CA1")))
        receive_until_mark(a)  # CA1 holds the only slot
        with client.websocket_connect("/twilio/media") as b:
            b.send_text(send(twilio.Connected("Call", "1.0.0")))
            b.send_text(send(twilio.build_start("MZ9", "CA9", custom_parameters={"resume": "2"})))
            receive_until_mark(b)
            assert client.get("/readyz").json()["calls_in_progress"] == 2
            with client.websocket_connect("/twilio/media") as c:
                c.send_text(send(twilio.Connected("Call", "1.0.0")))
                c.send_text(send(twilio.build_start("MZ3", "CA3")))
                with pytest.raises(WebSocketDisconnect) as closed:
                    c.receive_text()
            assert closed.value.code == 1013
            b.send_text(send(twilio.Stop(3, "MZ9", ACCOUNT, "CA9")))
        a.send_text(send(twilio.Stop(3, "MZ1", ACCOUNT, "CA1")))
    events = runtime.events
    timeline = events.events("vr_9")
    refusals = [e for e in events.events("vr_9") if e.kind is EventKind.CALL_REFUSED]
    events.close()
    assert refusals == []
    [resumed] = [e for e in timeline if e.kind is EventKind.CALL_RESUMED]
    assert resumed.data["stream"] == 2
    recap = [e.pii.get("agent_text") for e in timeline if e.data.get("reason") == "resumed"]
    assert recap == ["Sorry, I lost you. 4 keys so far."]


def test_a_forged_resume_parameter_without_state_is_refused_at_capacity(tmp_path):
    runtime = resumable_runtime(tmp_path)
    runtime.load = LoadMonitor(AdmissionConfig(max_calls=1))
    send = twilio.serialize_inbound
    with TestClient(create_app(runtime)) as client, client.websocket_connect("/twilio/media") as a:
        a.send_text(send(twilio.Connected("Call", "1.0.0")))
        a.send_text(send(twilio.build_start("MZ1", "CA1")))
        receive_until_mark(a)
        with client.websocket_connect("/twilio/media") as b:
            b.send_text(send(twilio.Connected("Call", "1.0.0")))
            b.send_text(send(twilio.build_start("MZ2", "CA2", custom_parameters={"resume": "2"})))
            with pytest.raises(WebSocketDisconnect) as closed:
                b.receive_text()
        assert closed.value.code == 1013
        a.send_text(send(twilio.Stop(3, "MZ1", ACCOUNT, "CA1")))
    runtime.events.close()
