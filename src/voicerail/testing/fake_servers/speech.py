"""Fake Deepgram, ElevenLabs and Cartesia WebSocket servers (real sockets, loopback).

Each reproduces the documented messages of its provider (see the adapter modules
for the references) and records what it received, so tests can check the
requests. Failure modes, per fake: ``reject_status`` (refuse the handshake with
an HTTP status), ``close_code`` (close mid-stream with that code), ``hang``
(accept, then never answer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


@dataclass
class FakeSpeechServer:
    """Behaviour and records shared by the three fakes.

    Attributes:
        transcript: what the fake STT hears (words are sent as interim, then final).
        audio_num_bytes: PCM bytes the fake TTS returns, in two chunks.
        reject_status: refuse the handshake with this HTTP status.
        close_code: close with this code after the first answer.
        hang: accept and never answer.
    """

    transcript: str = "book me for tuesday"
    audio_num_bytes: int = 3200
    reject_status: int | None = None
    close_code: int | None = None
    hang: bool = False
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    connections: int = 0


Handler = Callable[[FakeSpeechServer, ServerConnection], Awaitable[None]]


async def _deepgram(fake: FakeSpeechServer, ws: ServerConnection) -> None:
    words = fake.transcript.split()
    sent_interim = False
    async for message in ws:
        fake.received.append(message)
        if isinstance(message, bytes):
            if not sent_interim:
                sent_interim = True
                await ws.send(_dg_result(" ".join(words[:2]), is_final=False, start=0.0))
                if fake.close_code is not None:
                    await ws.close(fake.close_code, "fake failure")
                    return
            continue
        if json.loads(message).get("type") == "CloseStream":
            half = len(words) // 2
            await ws.send(_dg_result(" ".join(words[:half]), is_final=True, start=0.0))
            await ws.send(_dg_result(" ".join(words[half:]), is_final=True, start=0.8))
            metadata = {
                "type": "Metadata",
                "request_id": "req-1",
                "model_uuid": "uuid-1",
                "model_info": {"uuid-1": {"name": "nova-3", "version": "2026-01-01.1"}},
            }
            await ws.send(json.dumps(metadata))
            await ws.close()
            return


def _dg_result(text: str, *, is_final: bool, start: float) -> str:
    alternative = {"transcript": text, "confidence": 0.9, "words": []}
    return json.dumps(
        {
            "type": "Results",
            "channel": {"alternatives": [alternative]},
            "is_final": is_final,
            "speech_final": is_final,
            "start": start,
            "duration": 0.8,
        }
    )


def _pcm_halves(fake: FakeSpeechServer) -> list[str]:
    half = fake.audio_num_bytes // 2 // 2 * 2
    pcm = b"\x01\x00" * (fake.audio_num_bytes // 2)
    return [base64.b64encode(pcm[:half]).decode(), base64.b64encode(pcm[half:]).decode()]


async def _elevenlabs(fake: FakeSpeechServer, ws: ServerConnection) -> None:
    async for message in ws:
        body = json.loads(message)
        fake.received.append(body)
        if body.get("text") == "":
            for index, audio in enumerate(_pcm_halves(fake)):
                await ws.send(json.dumps({"audio": audio, "isFinal": None, "alignment": None}))
                if index == 0 and fake.close_code is not None:
                    await ws.close(fake.close_code, "fake failure")
                    return
            await ws.send(json.dumps({"isFinal": True}))
            return


async def _cartesia(fake: FakeSpeechServer, ws: ServerConnection) -> None:
    async for message in ws:
        body = json.loads(message)
        fake.received.append(body)
        context = body["context_id"]
        for index, data in enumerate(_pcm_halves(fake)):
            chunk = {"type": "chunk", "data": data, "done": False, "context_id": context}
            await ws.send(json.dumps(chunk))
            if index == 0 and fake.close_code is not None:
                await ws.close(fake.close_code, "fake failure")
                return
        await ws.send(json.dumps({"type": "done", "done": True, "context_id": context}))
        return


@contextlib.asynccontextmanager
async def _run(fake: FakeSpeechServer, handler: Handler) -> AsyncIterator[str]:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        fake.paths.append(request.path)
        fake.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        if fake.reject_status is not None:
            body = json.dumps({"error": "rejected by fake"}).encode()
            return Response(fake.reject_status, "Rejected", Headers(), body)
        return None

    async def handle(ws: ServerConnection) -> None:
        fake.connections += 1
        if fake.hang:
            await asyncio.Event().wait()
        await handler(fake, ws)

    server: Server
    async with serve(handle, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def run_fake_deepgram(fake: FakeSpeechServer) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve a fake Deepgram ``/v1/listen``; yields its ``ws://`` base URL."""
    return _run(fake, _deepgram)


def run_fake_elevenlabs(fake: FakeSpeechServer) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve a fake ElevenLabs ``stream-input``; yields its ``ws://`` base URL."""
    return _run(fake, _elevenlabs)


def run_fake_cartesia(fake: FakeSpeechServer) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve a fake Cartesia ``/tts/websocket``; yields its ``ws://`` base URL."""
    return _run(fake, _cartesia)
