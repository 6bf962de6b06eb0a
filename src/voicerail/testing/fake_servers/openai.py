"""A fake OpenAI-compatible Chat Completions server (Starlette, real socket).

It streams scripted replies as ``chat.completion.chunk`` SSE events (text and
tool-call fragments, then usage and ``[DONE]``), answers ``GET /models``, and
misbehaves on demand: an HTTP status with OpenAI's error body, a slow first
byte, a connection dropped mid-stream, or a hang. Every request body is kept in
``FakeOpenAI.requests`` for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeOpenAI:
    """Behaviour and records of one fake server.

    Attributes:
        reply: text streamed in two-word pieces.
        tool_calls: (id, name, arguments-dict) streamed as fragments.
        status: answer this HTTP status with an OpenAI error body instead.
        first_byte_delay_s: wait before the response starts.
        drop_after_chunks: close the stream after this many chunks, without [DONE].
        hang: never answer.
        requests: bodies received.
        headers: headers received.
    """

    reply: str = "Hello there."
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    status: int | None = None
    first_byte_delay_s: float = 0.0
    drop_after_chunks: int | None = None
    hang: bool = False
    model: str = "fake-gpt"
    fingerprint: str = "fp_test1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def chunks(self) -> list[dict[str, Any]]:
        words = self.reply.split(" ")
        pieces = [" ".join(words[i : i + 2]) for i in range(0, len(words), 2)]
        deltas: list[dict[str, Any]] = [
            {"content": p if i == 0 else " " + p} for i, p in enumerate(pieces) if p
        ]
        for index, (call_id, name, arguments) in enumerate(self.tool_calls):
            text = json.dumps(arguments)
            half = len(text) // 2
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": text[:half]},
                        }
                    ]
                }
            )
            deltas.append(
                {"tool_calls": [{"index": index, "function": {"arguments": text[half:]}}]}
            )
        finish = "tool_calls" if self.tool_calls else "stop"
        out = [self._chunk({"delta": d, "index": 0, "finish_reason": None}) for d in deltas]
        out.append(self._chunk({"delta": {}, "index": 0, "finish_reason": finish}))
        usage = {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 0}
        out.append({**self._chunk(None), "choices": [], "usage": usage})
        return out

    def _chunk(self, choice: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [choice] if choice else [],
        }


def _app(fake: FakeOpenAI) -> Starlette:
    async def completions(request: Request) -> Response:
        fake.requests.append(await request.json())
        fake.headers.append(dict(request.headers))
        if fake.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(fake.first_byte_delay_s)
        if fake.status is not None:
            kind = "rate_limit_exceeded" if fake.status == 429 else "server_error"
            error = {"message": f"fake error {fake.status}", "type": kind, "code": None}
            return JSONResponse({"error": error}, status_code=fake.status)

        async def events() -> AsyncIterator[str]:
            for index, chunk in enumerate(fake.chunks()):
                if fake.drop_after_chunks is not None and index >= fake.drop_after_chunks:
                    return
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def speech(request: Request) -> Response:
        fake.requests.append(await request.json())
        fake.headers.append(dict(request.headers))
        if fake.status is not None:
            error = {"message": f"fake error {fake.status}", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=fake.status)

        async def pcm() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"\x02\x00" * 1201  # odd-sized pieces across samples: 2402 bytes
                yield b"\x02"
            yield b"\x00"

        return StreamingResponse(pcm(), media_type="audio/pcm")

    async def models(request: Request) -> Response:
        if fake.status is not None:
            return JSONResponse({"error": {"message": "down"}}, status_code=fake.status)
        return JSONResponse({"object": "list", "data": [{"id": fake.model, "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
            Route("/v1/audio/speech", speech, methods=["POST"]),
        ]
    )


@contextlib.asynccontextmanager
async def run_fake_openai(fake: FakeOpenAI) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 (a free port); yields the base URL ``…/v1``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(fake), log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        server.force_exit = True
        await task
        sock.close()
