"""Abuse probe: replays issue 11's section 4 probes against a live server and prints
what the server did (times are wall seconds on this machine).

The server is the real ASGI app and call driver under uvicorn with the request-head
deadline protocol ``voicerail serve`` uses, built around the model-free echo agent
and energy VAD (``voicerail.sim.fake_server``), with the default
:class:`~voicerail.server.limits.ServerLimits` unless flags shorten them. Probes:

* a WebSocket that never sends ``start``; one that sends ``start`` then nothing;
* request headers trickled one every ``--trickle-s`` seconds;
* ``--idle-sockets`` WebSockets opened at once (how many accepted, how many calls);
* ``media`` sent as fast as possible for up to 10 s (messages and audio accepted);
* a binary frame carrying ``start``;
* ``GET /api/calls`` with ``limit=-1`` and ``limit=2**63``;
* 200 wrong passwords to ``POST /login``;
* a 100 MB body declared to ``/twilio/voice`` without a signature (bytes the server
  reads before answering).

Usage::

    .venv/bin/python bench/abuse_probe.py [--start-deadline 10] [--media-silence 5]
        [--header-timeout 10] [--trickle-s 2] [--idle-sockets 500]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import AccessSettings
from voicerail.server.http_limits import header_timeout_protocol
from voicerail.server.limits import ServerLimits
from voicerail.server.operations import OperationsSettings
from voicerail.sim.fake_server import FakeServerConfig, build_runtime
from voicerail.wire import twilio
from voicerail.wire.stream_limits import StreamLimits

API_KEY = "probe-api-key"
PAYLOAD = base64.b64encode(b"\xff" * 160).decode()


def _media(chunk: int) -> str:
    return (
        f'{{"event":"media","streamSid":"MZ_FLOOD","media":{{"track":"inbound",'
        f'"chunk":"{chunk}","timestamp":"{chunk * 20}","payload":"{PAYLOAD}"}}}}'
    )


def _start(sid: str) -> str:
    return twilio.serialize_inbound(twilio.build_start(f"MZ_{sid}", f"CA_{sid}"))


async def _until_closed(ws: Any, limit_s: float) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_s):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        return time.monotonic() - started, closed.rcvd
    except TimeoutError:
        return time.monotonic() - started, None


async def probe_idle(url: str, send_start: bool, limit_s: float) -> str:
    async with websockets.connect(url) as ws:
        if send_start:
            await ws.send(_start("IDLE"))
        waited, close = await _until_closed(ws, limit_s)
    if close is None:
        return f"still open after {waited:.1f} s"
    return f"closed after {waited:.1f} s, code {close.code}, reason {close.reason!r}"


async def probe_trickle(host: str, port: int, every_s: float, limit_s: float) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    sent = 0
    first_line = b""
    while time.monotonic() - started < limit_s:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every_s):
                first_line = await reader.readline()
        if first_line or reader.at_eof():
            break
        writer.write(f"X-Trickle-{sent}: 1\r\n".encode())
        sent += 1
    waited = time.monotonic() - started
    writer.close()
    if not first_line and not reader.at_eof():
        return f"still open after {waited:.1f} s ({sent} headers trickled)"
    return f"answered {first_line.decode().strip()!r} after {waited:.1f} s ({sent} headers)"


async def probe_idle_burst(url: str, count: int) -> str:
    async def one() -> Any:
        try:
            return await websockets.connect(url, open_timeout=5)
        except Exception:  # refused at the handshake: counted, not raised
            return None

    started = time.monotonic()
    sockets = await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.monotonic() - started
    accepted = [ws for ws in sockets if ws is not None]
    for ws in accepted:
        await ws.close()
    return f"{len(accepted)} of {count} accepted in {elapsed:.2f} s"


async def probe_flood(url: str) -> str:
    sent = 0
    started = time.monotonic()
    close = None
    async with websockets.connect(url) as ws:
        await ws.send(_start("FLOOD"))
        try:
            while time.monotonic() - started < 10.0:
                sent += 1
                await ws.send(_media(sent))
        except websockets.ConnectionClosed as closed:
            close = closed.rcvd
    elapsed = time.monotonic() - started
    end = f"server closed it: {close.code} {close.reason!r}" if close else "not closed"
    # `sent` counts what the client wrote before it saw the close (socket buffers
    # included), not what the server processed: the close reason says that.
    return f"client wrote {sent} media messages in {elapsed:.2f} s; {end}"


async def probe_binary(url: str) -> str:
    async with websockets.connect(url) as ws:
        await ws.send(_start("BIN").encode())
        _, close = await _until_closed(ws, 5.0)
    return f"code {close.code}, reason {close.reason!r}" if close else "still open after 5 s"


async def probe_http(base: str) -> list[str]:
    lines = []
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        for limit in ("-1", str(2**63)):
            response = await client.get(
                "/api/calls",
                params={"limit": limit},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            lines.append(f"GET /api/calls?limit={limit}: {response.status_code} {response.text}")
        started = time.monotonic()
        statuses: dict[int, int] = {}
        for k in range(200):
            status = (await client.post("/login", data={"secret": f"guess{k}"})).status_code
            statuses[status] = statuses.get(status, 0) + 1
        lines.append(f"POST /login x200 wrong: {statuses} in {time.monotonic() - started:.2f} s")
    return lines


async def probe_unsigned_body(host: str, port: int) -> str:
    """Declare 100 MB, send none of it, and see whether the server answers anyway."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\n"
    )
    started = time.monotonic()
    line = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            line = await reader.readline()
    writer.close()
    waited = time.monotonic() - started
    if not line:
        return f"no answer within {waited:.1f} s with 0 body bytes sent (waits for the body)"
    return f"{line.decode().strip()!r} after {waited:.3f} s with 0 of 100,000,000 bytes sent"


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="abuse-probe-"))
    runtime, _ = build_runtime(
        FakeServerConfig(agent="echo", data_dir=data_dir, vad="energy", vad_batch_ms=0)
    )
    limits = ServerLimits(
        stream=StreamLimits(
            start_deadline_s=args.start_deadline, media_silence_s=args.media_silence
        ),
        header_timeout_s=args.header_timeout,
    )
    settings = ServerSettings(
        twilio_auth_token="probe-token",
        operations=OperationsSettings(
            access=AccessSettings(api_key=API_KEY, password="right"), credentials=[]
        ),
        limits=limits,
    )
    app = create_app(runtime, settings)
    sock = socket.create_server(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_level="error", http=header_timeout_protocol(limits.header_timeout_s)
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.05)
    url = f"ws://{host}:{port}/twilio/media"
    wait_s = max(args.start_deadline, args.media_silence, args.header_timeout) + 10
    results = await asyncio.gather(
        probe_idle(url, send_start=False, limit_s=wait_s),
        probe_idle(url, send_start=True, limit_s=wait_s),
        probe_trickle(host, port, args.trickle_s, wait_s),
    )
    print(f"never sends start:        {results[0]}")
    print(f"start, then nothing:      {results[1]}")
    print(f"headers trickled ({args.trickle_s} s):  {results[2]}")
    burst = await probe_idle_burst(url, args.idle_sockets)
    print(f"{args.idle_sockets} idle WebSockets:      {burst}")
    print(f"media flood:              {await probe_flood(url)}")
    print(f"binary frame:             {await probe_binary(url)}")
    for line in await probe_http(f"http://{host}:{port}"):
        print(line)
    print(f"unsigned 100 MB webhook:  {await probe_unsigned_body(host, port)}")
    await asyncio.sleep(0.5)
    calls = runtime.events.calls(limit=1000)
    outcomes = {c.call_sid: c.outcome for c in calls}
    print(f"calls recorded: {len(calls)} {outcomes}")
    server.should_exit = True
    await serving
    runtime.events.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-deadline", type=float, default=10.0, help="seconds")
    parser.add_argument("--media-silence", type=float, default=5.0, help="seconds")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--trickle-s", type=float, default=2.0, help="seconds per header")
    parser.add_argument("--idle-sockets", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
