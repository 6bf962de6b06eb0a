"""What the WebSocket fakes share: serving on loopback, recording, misbehaving.

Each fake is a dataclass: its fields script the behaviour, and
``connections`` records every handshake and message for assertions. The failure
modes every fake offers:

* ``reject_status``: refuse the HTTP upgrade with that status and the provider's
  documented error body (the fakes also refuse missing or wrong credentials
  and bad query parameters on their own, as the providers do).
* ``close_code`` after ``close_after_messages`` server messages: close mid-stream
  with that code; 1006 drops the TCP connection without a close frame.
* ``hang``: accept the connection, read everything, answer nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# RFC 6455 §7.4.1: 1006 is never sent in a frame; the fakes abort the TCP connection instead.
ABNORMAL_CLOSURE = 1006
_SILENCE_PEAK = 300  # int16 peak below which a fake STT hears nothing


@dataclass
class RecordedConnection:
    """One connection as a fake saw it.

    Attributes:
        path: request path without the query.
        query: query parameters (the last value of each name).
        headers: handshake headers, names lower-cased.
        received: messages from the client in order: ``str`` text frames, ``bytes``
            binary frames.
        close_code: the close code once the connection closed (1006 when it was
            dropped without a close frame).
        closed: set when the connection has closed, whoever closed it.
    """

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    received: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def json_received(self) -> list[Any]:
        """The text frames, JSON-decoded."""
        return [json.loads(m) for m in self.received if isinstance(m, str)]

    def binary_received(self) -> list[bytes]:
        """The binary frames."""
        return [m for m in self.received if isinstance(m, bytes)]


class StopScript(Exception):
    """Raised inside a fake's script when a failure mode ended the connection."""


@dataclass
class Session:
    """One connection being served: sends count toward ``close_after_messages``."""

    fake: FakeWebSocketServer
    socket: ServerConnection
    record: RecordedConnection
    num_sent: int = 0

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame, then apply the ``close_code`` failure mode.

        Raises:
            StopScript: the failure mode closed the connection.
        """
        await self.socket.send(json.dumps(message))
        self.num_sent += 1
        if self.fake.close_code is not None and self.num_sent >= self.fake.close_after_messages:
            await close_abruptly(self.socket, self.fake.close_code, self.fake.close_reason)
            raise StopScript

    async def receive(self) -> str | bytes | None:
        """The next client message (recorded), or None once the client closed."""
        try:
            message = await self.socket.recv()
        except ConnectionClosed:
            return None
        self.record.received.append(message)
        return message


async def close_abruptly(socket: ServerConnection, code: int, reason: str = "") -> None:
    """Close with ``code``; for 1006 drop the TCP connection without a close frame."""
    if code == ABNORMAL_CLOSURE:
        # Let what was sent reach the client first: abort() discards the buffer.
        for _ in range(100):
            if not socket.transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.001)
        socket.transport.abort()
    else:
        await socket.close(code, reason)


@dataclass
class FakeWebSocketServer:
    """Behaviour and records every WebSocket fake shares (see the module docstring).

    Attributes:
        api_key: the credential the fake accepts; None accepts any non-empty one.
        reject_status: refuse every handshake with this HTTP status.
        close_code: close with this code after ``close_after_messages`` messages.
        close_after_messages: server messages sent before ``close_code`` applies.
        close_reason: reason text sent with ``close_code``.
        hang: accept, record what arrives, never answer.
        connections: one record per handshake, refused ones included.
    """

    api_key: str | None = None
    reject_status: int | None = None
    close_code: int | None = None
    close_after_messages: int = 1
    close_reason: str = "fake failure"
    hang: bool = False
    connections: list[RecordedConnection] = field(default_factory=list)

    def check_handshake(self, record: RecordedConnection) -> tuple[int, str] | None:
        """Return (HTTP status, reason) to refuse the handshake, None to accept it."""
        return None

    def reject_response(self, status: int, detail: str) -> tuple[dict[str, str], bytes]:
        """Headers and body of a refused handshake, in the provider's format."""
        return {"Content-Type": "application/json"}, json.dumps({"error": detail}).encode()

    async def serve_connection(self, session: Session) -> None:
        """The provider's side of one accepted connection."""
        raise NotImplementedError


def check_credential(given: str | None, expected: str | None) -> tuple[int, str] | None:
    """(401, reason) unless ``given`` is present and matches ``expected`` (if set)."""
    if not given:
        return 401, "missing credentials"
    if expected is not None and given != expected:
        return 401, "invalid credentials"
    return None


def tone_pcm(duration_s: float, sample_rate_hz: int, frequency_hz: float = 220.0) -> bytes:
    """An audible sine tone: s16le mono PCM at ``sample_rate_hz`` (peak 8000)."""
    num_samples = max(1, round(duration_s * sample_rate_hz))
    t = np.arange(num_samples) / sample_rate_hz
    return (8000 * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2").tobytes()


def is_silent(pcm: bytes) -> bool:
    """True when s16le ``pcm`` peaks below the level a fake STT hears."""
    if len(pcm) < 2:
        return True
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return int(np.max(np.abs(samples.astype(np.int32)))) < _SILENCE_PEAK


@contextlib.asynccontextmanager
async def run_websocket_fake(fake: FakeWebSocketServer) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 at a free port; yields ``ws://127.0.0.1:<port>``."""
    records: dict[ServerConnection, RecordedConnection] = {}

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        record = RecordedConnection(
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={name.lower(): value for name, value in request.headers.raw_items()},
        )
        fake.connections.append(record)
        refusal = (fake.reject_status, "rejected by fake") if fake.reject_status else None
        refusal = refusal or fake.check_handshake(record)
        if refusal is None:
            records[connection] = record
            return None
        record.closed.set()
        status, detail = refusal
        headers, body = fake.reject_response(status, detail)
        return Response(status, http.HTTPStatus(status).phrase, Headers(headers), body)

    async def handle(socket: ServerConnection) -> None:
        record = records.pop(socket)
        session = Session(fake, socket, record)
        try:
            if fake.hang:
                while await session.receive() is not None:
                    pass
            else:
                await fake.serve_connection(session)
        except (StopScript, ConnectionClosed):
            pass
        finally:
            await _finish_close(socket, record)

    async with serve(handle, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def _finish_close(socket: ServerConnection, record: RecordedConnection) -> None:
    # The script is over: finish the closing handshake (at once when the client
    # or a failure mode already closed it) so the record holds the final code.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            await socket.close()
            await socket.wait_closed()
    record.close_code = socket.close_code if socket.close_code is not None else ABNORMAL_CLOSURE
    record.closed.set()
