"""The request-head deadline (slowloris), on uvicorn's protocol with a fake loop:
the timer is fired by hand, so no test waits."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from voicerail.server.http_limits import header_timeout_protocol


class FakeTimer:
    def __init__(self, delay_s: float, callback: Any) -> None:
        self.delay_s = delay_s
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The loop calls the protocol makes: timers are recorded, tasks dropped."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay_s: float, callback: Any) -> FakeTimer:
        timer = FakeTimer(delay_s, callback)
        self.timers.append(timer)
        return timer

    def create_task(self, coro: Any) -> Any:
        coro.close()
        return _DoneTask()

    def live_timers(self, delay_s: float) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled and t.delay_s == delay_s]


class _DoneTask:
    def add_done_callback(self, callback: Any) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def connect(timeout_s: float = 7.0) -> tuple[Any, FakeLoop, FakeTransport]:
    cls = header_timeout_protocol(timeout_s)
    config = uvicorn.Config(_app, http=cls, lifespan="off", log_level="warning")
    config.load()
    loop = FakeLoop()
    protocol = cls(config, ServerState(), {}, _loop=loop)  # type: ignore[arg-type]
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, loop, transport


def test_headers_trickled_past_the_deadline_get_408_and_a_close():
    """Issue 11: one header every 10 s kept a connection open for 300 s."""
    protocol, loop, transport = connect()
    protocol.data_received(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n")
    protocol.data_received(b"X-A: 1\r\n")
    [timer] = loop.live_timers(7.0)  # each byte did not restart it
    timer.callback()
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.written.endswith(b"request head not received within 7.0 s")


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline():
    _, loop, transport = connect()
    [timer] = loop.live_timers(7.0)
    timer.callback()
    assert transport.closed


def test_a_complete_head_cancels_the_deadline():
    protocol, loop, transport = connect()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert loop.live_timers(7.0) == []
    assert not transport.closed


def test_a_lost_connection_cancels_the_deadline():
    protocol, loop, _ = connect()
    protocol.connection_lost(None)
    assert loop.live_timers(7.0) == []


def test_the_timeout_must_be_positive():
    with pytest.raises(ValueError, match="header timeout must be positive, got 0 s"):
        header_timeout_protocol(0)
