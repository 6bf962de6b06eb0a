"""Abuse and bad input at the ASGI app (issue 11, section 4): idle and abusive media
streams, binary frames, body caps and deadlines. Deadlines run on a fake clock; the
only real waits are the driver's 50 ms tick and a hang guard that fails the test."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.limits import ServerLimits
from voicerail.session.runtime import Runtime
from voicerail.testing.asgi import HANG_GUARD_S, AsgiWebSocket
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS
from voicerail.wire import twilio
from voicerail.wire.stream_limits import StreamLimits

from .test_app import TOKEN

FRAME = b"\xff" * 160


@pytest.fixture
def store(tmp_path):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    yield events
    events.close()


def make_app(store, clock: FakeClock, **settings: Any) -> Any:
    runtime = Runtime(
        agent=QuietAgent(), stt=SilentSTT(), tts=SilentTTS(), events=store, clock=clock
    )
    return create_app(runtime, ServerSettings(**settings))


class Socket(AsgiWebSocket):
    """An :class:`AsgiWebSocket` on ``/twilio/media`` that sends Twilio messages."""

    def send_message(self, message: twilio.InboundMessage) -> None:
        self.send(twilio.serialize_inbound(message))


def media(stream_sid: str, chunk: int) -> twilio.Media:
    return twilio.Media(None, stream_sid, "inbound", chunk, chunk * 20, FRAME)


def calls_in_progress(app: Any) -> int:
    from starlette.testclient import TestClient

    return TestClient(app).get("/healthz").json()["calls_in_progress"]


async def test_a_socket_that_never_sends_start_is_closed_and_is_no_call(store):
    """Issue 11: a WebSocket that never sent start was open after 300 s, and counted."""
    clock = FakeClock()
    app = make_app(store, clock)
    ws = Socket(app)
    assert await ws.accepted()
    assert calls_in_progress(app) == 0
    clock.advance(10.5)
    close = await ws.closed()
    assert close["code"] == 1008
    assert close["reason"].startswith("protocol error: no 'start' within 10.0 s of connecting")
    assert store.calls() == []


async def test_start_then_no_media_ends_the_call_after_the_silence_limit(store):
    """Issue 11: a WebSocket that sent start and then nothing stayed open."""
    clock = FakeClock()
    app = make_app(store, clock)
    ws = Socket(app)
    assert await ws.accepted()
    ws.send_message(twilio.build_start("MZ1", "CA1"))
    await ws.receive()  # the greeting: the call has started
    assert calls_in_progress(app) == 1
    clock.advance(5.5)
    close = await ws.closed()
    assert (close["code"], close["reason"]) == (
        1008,
        "protocol error: no media for 5.5 s (limit 5.0 s)",
    )
    [call] = store.calls()
    assert (call.outcome, call.call_sid) == ("failed", "CA1")


async def test_media_faster_than_real_time_closes_that_stream_only(store, caplog):
    """Issue 11: 1,846 s of audio in 10 s was accepted; now that stream alone ends, and
    the failed call leaves one log line naming it and the cause."""
    clock = FakeClock()
    app = make_app(store, clock)
    calm, flood = Socket(app), Socket(app)
    assert await calm.accepted() and await flood.accepted()
    calm.send_message(twilio.build_start("MZ_CALM", "CA_CALM"))
    flood.send_message(twilio.build_start("MZ_FLOOD", "CA_FLOOD"))
    calm.send_message(media("MZ_CALM", 1))
    with caplog.at_level(logging.INFO, logger="voicerail.session.driver"):
        for chunk in range(1, 201):  # 4 s of audio at one instant
            flood.send_message(media("MZ_FLOOD", chunk))
        close = await flood.closed()
    assert close["code"] == 1008
    assert close["reason"].startswith("protocol error: inbound media faster than real time")
    calm.send_message(media("MZ_CALM", 2))
    calm.send_message(twilio.Stop(None, "MZ_CALM", "AC" + "0" * 32, "CA_CALM"))
    await calm.hang_up()
    outcomes = {c.call_sid: c.outcome for c in store.calls()}
    assert outcomes == {"CA_CALM": "abandoned", "CA_FLOOD": "failed"}
    flood_call = next(c for c in store.calls() if c.call_sid == "CA_FLOOD")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"call {flood_call.call_id} failed (media_rate): {flood_call.error}"]


async def test_a_binary_frame_is_a_protocol_error(store):
    """Issue 11: binary frames carrying JSON were accepted as a normal call."""
    app = make_app(store, FakeClock())
    ws = Socket(app)
    assert await ws.accepted()
    ws.send(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")).encode())
    close = await ws.closed()
    assert close["code"] == 1008
    assert close["reason"].startswith("protocol error: binary frame of ")
    assert close["reason"].endswith(" bytes; twilio sends text frames only")
    assert store.calls() == []


async def test_sockets_waiting_for_start_are_capped(store):
    """Issue 11: 500 idle WebSockets were all accepted; beyond the cap they are refused."""
    app = make_app(store, FakeClock(), limits=ServerLimits(max_pending_streams=2))
    first, second, third = Socket(app), Socket(app), Socket(app)
    assert await first.accepted() and await second.accepted()
    assert (await third.receive())["type"] == "websocket.close"
    first.send_message(twilio.build_start("MZ1", "CA1"))
    await first.receive()  # started: no longer waiting
    fourth = Socket(app)
    assert await fourth.accepted()
    for ws in (first, second, fourth):
        await ws.hang_up()


async def test_stream_limits_come_from_the_server_settings(store):
    clock = FakeClock()
    limits = ServerLimits(stream=StreamLimits(start_deadline_s=1.0))
    ws = Socket(make_app(store, clock, limits=limits))
    assert await ws.accepted()
    clock.advance(1.5)
    assert (await ws.closed())["reason"].startswith("protocol error: no 'start' within 1.0 s")


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_pending_streams": 0}, "max_pending_streams must be at least 1, got 0"),
        ({"body_timeout_s": 0.0}, "body_timeout_s must be above 0 s, got 0.0"),
        (
            {"stream": StreamLimits(media_burst_s=-1.0)},
            "stream.media_burst_s must be above 0 s, got -1.0",
        ),
    ],
)
def test_limits_out_of_range_are_refused_by_name(limits, message):
    with pytest.raises(ValueError, match=message):
        ServerLimits(**limits)


# -- HTTP bodies -----------------------------------------------------------------


class Body:
    """An ASGI receive that hands out a body in chunks and counts what was read."""

    def __init__(self, num_chunks: int, chunk: bytes = b"a" * 65536, stall: bool = False):
        self.num_chunks = num_chunks
        self.chunk = chunk
        self.stall = stall
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        if self.read >= self.num_chunks:
            if self.stall:
                await asyncio.sleep(HANG_GUARD_S)
            return {"type": "http.disconnect"}
        self.read += 1
        more = self.read < self.num_chunks or self.stall
        return {"type": "http.request", "body": self.chunk, "more_body": more}


async def post(app: Any, path: str, body: Body, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, body, send), HANG_GUARD_S)
    return int(sent[0]["status"])


FORM_TYPE = (b"content-type", b"application/x-www-form-urlencoded")


async def test_an_unsigned_webhook_is_refused_before_its_body_is_read(store):
    """Issue 11: an unsigned 100 MB body to /twilio/voice was read whole before the 403."""
    app = make_app(store, FakeClock(), twilio_auth_token=TOKEN)
    body = Body(num_chunks=1600)  # 100 MiB, never declared
    assert await post(app, "/twilio/voice", body, [FORM_TYPE]) == 403
    assert body.read == 0


async def test_a_body_over_the_cap_is_refused_with_413(store):
    app = make_app(store, FakeClock(), twilio_auth_token=TOKEN)
    signed = [FORM_TYPE, (b"x-twilio-signature", b"AAAA")]
    body = Body(num_chunks=1600)
    assert await post(app, "/twilio/voice", body, signed) == 413
    assert body.read == 2  # 64 KiB is the cap: the second chunk crosses it
    declared = Body(num_chunks=1600)
    length = (b"content-length", str(1600 * 65536).encode())
    assert await post(app, "/twilio/voice", declared, [*signed, length]) == 413
    assert declared.read == 0


async def test_a_body_that_stops_arriving_gets_408(store):
    app = make_app(store, FakeClock(), limits=ServerLimits(body_timeout_s=0.05))
    body = Body(num_chunks=1, chunk=b"CallSid=CA1", stall=True)
    assert await post(app, "/twilio/voice", body, [FORM_TYPE]) == 408
