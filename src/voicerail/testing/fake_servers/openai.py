"""A fake OpenAI-compatible API (Starlette, served by uvicorn on a real socket).

Endpoints, as documented (see :mod:`voicerail.providers.openai_chat` and
:mod:`voicerail.providers.openai_tts` for the references):

* ``POST /v1/chat/completions`` with ``stream: true``: scripted replies as
  ``chat.completion.chunk`` Server-Sent Events (a role chunk, text a word at a
  time, tool calls as fragments with arguments in 8-character pieces, a
  ``finish_reason`` chunk, a ``usage`` chunk when ``stream_options.include_usage``
  is set) and ``data: [DONE]``.
* ``POST /v1/audio/speech`` with ``response_format: "pcm"``: a sine tone as raw
  24 kHz s16le, ``seconds_per_char`` per character of ``input``, streamed in
  pieces of ``speech_chunk_num_bytes`` (odd by default, so samples are split
  across reads as on a real network).
* ``GET /v1/models``: the health probe.

Failures: a status with OpenAI's error envelope (for all or the first
``fail_requests`` requests), a missing or wrong ``Authorization: Bearer`` (401),
a slow first byte, a hang before the response, a stall or a dropped connection
after some chunks, and an error object inside the stream. Every request is kept
in ``requests``; streams the client abandoned are counted in ``disconnects``.

Usage::

    fake = FakeOpenAI(replies=[ScriptedReply("Sure.")])
    async with run_fake_openai(fake) as base_url:   # http://127.0.0.1:<port>/v1
        llm = OpenAIChatLLM("gpt-4o-mini", base_url=base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voicerail.testing.fake_servers._common import tone_pcm

SPEECH_RATE_HZ = 24000
_ARGUMENT_PIECE_CHARS = 8

# (type, code) of OpenAI's error envelope per status; messages are the fake's own.
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the fake model makes.

    Attributes:
        id: the call id.
        name: the function name.
        arguments: encoded as JSON; a ``str`` is sent as it is (to script a model
            that emits invalid JSON).
    """

    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True)
class ScriptedReply:
    """One reply of the fake model.

    Attributes:
        text: streamed a word at a time.
        tool_calls: streamed after the text, as fragments.
        finish_reason: None picks ``tool_calls`` when there are calls, else ``stop``.
        prompt_tokens: reported in ``usage``.
    """

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = None
    prompt_tokens: int = 25


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _DroppedConnection(Exception):
    """Raised inside a response body: the server then closes the TCP connection."""


@dataclass
class FakeOpenAI:
    """Behaviour and records of one fake server; see the module docstring.

    Attributes:
        replies: chat replies in request order; the last one repeats.
        model: the ``model`` every chunk names.
        system_fingerprint: sent in every chunk when not None.
        api_key: the accepted bearer key; None accepts any request.
        status: answer this HTTP status with OpenAI's error envelope.
        fail_requests: how many requests ``status`` applies to; None means all.
        error_code: override the envelope's ``code`` (``insufficient_quota``).
        first_byte_delay_s: wait before the response starts.
        chunk_delay_s: wait before each streamed piece.
        hang: never answer (until the server stops).
        stall_after_chunks: stop sending after this many pieces, keeping the
            connection open.
        drop_after_chunks: close the connection after this many pieces.
        stream_error_after_chunks: send an error object after this many chunks
            and end the stream.
        seconds_per_char: speech length per input character.
        speech_chunk_num_bytes: size of the streamed speech pieces.
        requests: every request received.
        disconnects: streams the client abandoned before their end.
    """

    replies: list[ScriptedReply] = field(
        default_factory=lambda: [ScriptedReply("Sure, Tuesday at three works.")]
    )
    model: str = "gpt-4o-mini-2024-07-18"
    system_fingerprint: str | None = "fp_fake0001"
    api_key: str | None = None
    status: int | None = None
    fail_requests: int | None = None
    error_code: str | None = None
    first_byte_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    hang: bool = False
    stall_after_chunks: int | None = None
    drop_after_chunks: int | None = None
    stream_error_after_chunks: int | None = None
    seconds_per_char: float = 0.05
    speech_chunk_num_bytes: int = 4801
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: int = 0
    _num_failed: int = field(default=0, init=False, repr=False)
    _num_replies: int = field(default=0, init=False, repr=False)
    _release: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _disconnected: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def chat_requests(self) -> list[RecordedRequest]:
        """The ``/chat/completions`` requests."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    async def wait_disconnect(self, timeout_s: float = 2.0) -> None:
        """Wait until the client abandons a stream.

        Raises:
            TimeoutError: no stream was abandoned within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            await self._disconnected.wait()

    def next_reply(self) -> ScriptedReply:
        """The reply for the next chat request."""
        reply = self.replies[min(self._num_replies, len(self.replies) - 1)]
        self._num_replies += 1
        return reply

    def error_response(self, status: int, message: str) -> JSONResponse:
        """OpenAI's error envelope for ``status``."""
        kind, code = _ERRORS.get(status, ("server_error", None))
        if self.error_code is not None:
            kind = code = self.error_code
        error = {"message": message, "type": kind, "param": None, "code": code}
        return JSONResponse({"error": error}, status_code=status)

    async def refusal(self, request: Request) -> Response | None:
        """Record ``request``, apply auth and the pre-response failure modes."""
        body: Any = None
        if request.method == "POST":
            with contextlib.suppress(ValueError):
                body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(request.method, request.url.path, headers, body))
        if self.hang:
            await self._release.wait()
            return self.error_response(503, "fake: stopped while hanging")
        await asyncio.sleep(self.first_byte_delay_s)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_response(401, "fake: incorrect api key provided")
        if self.status is not None and (
            self.fail_requests is None or self._num_failed < self.fail_requests
        ):
            self._num_failed += 1
            return self.error_response(self.status, f"fake: failure with status {self.status}")
        return None

    async def stream(self, pieces: list[bytes], error: bytes = b"") -> AsyncIterator[bytes]:
        """Stream ``pieces`` through the mid-stream failure modes."""
        try:
            for index, piece in enumerate(pieces):
                if index == self.stall_after_chunks:
                    await self._release.wait()
                    return
                if index == self.drop_after_chunks:
                    raise _DroppedConnection
                if index == self.stream_error_after_chunks and error:
                    yield error
                    return
                await asyncio.sleep(self.chunk_delay_s)
                yield piece
        except asyncio.CancelledError:
            # Starlette cancels the body when the client disconnects mid-stream.
            self.disconnects += 1
            self._disconnected.set()
            raise


def chat_chunks(
    fake: FakeOpenAI, reply: ScriptedReply, include_usage: bool
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects for ``reply``, in order."""
    created = int(time.time())
    usage_field = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": fake.model,
        }
        if fake.system_fingerprint is not None:
            body["system_fingerprint"] = fake.system_fingerprint
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return body | {"choices": [choice] if delta is not None else []} | usage_field

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in re.findall(r"\s*\S+", reply.text)]
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call.id, "type": "function"}
        chunks.append(
            chunk({"tool_calls": [head | {"function": {"name": call.name, "arguments": ""}}]})
        )
        arguments = (
            call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        )
        for start in range(0, len(arguments), _ARGUMENT_PIECE_CHARS):
            piece = arguments[start : start + _ARGUMENT_PIECE_CHARS]
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    finish_reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    chunks.append(chunk({}, finish_reason))
    if include_usage:
        completion_tokens = len(chunks) - 2
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": reply.prompt_tokens + completion_tokens,
        }
        chunks.append(chunk(None) | {"usage": usage})
    return chunks


def _sse(data: Any) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def build_app(fake: FakeOpenAI) -> Starlette:
    """The Starlette application serving ``fake``."""

    async def completions(request: Request) -> Response:
        if (refused := await fake.refusal(request)) is not None:
            return refused
        body = fake.requests[-1].body
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return fake.error_response(400, "fake: model and messages are required")
        if body.get("stream") is not True:
            return fake.error_response(400, "fake: only stream=true is implemented")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pieces = [_sse(c) for c in chat_chunks(fake, fake.next_reply(), include_usage)]
        pieces.append(_sse("[DONE]"))
        error = {
            "error": {"message": "fake: failure mid-stream", "type": "server_error", "code": None}
        }
        return StreamingResponse(fake.stream(pieces, _sse(error)), media_type="text/event-stream")

    async def speech(request: Request) -> Response:
        if (refused := await fake.refusal(request)) is not None:
            return refused
        body = fake.requests[-1].body
        if not isinstance(body, dict) or not all(body.get(k) for k in ("model", "input", "voice")):
            return fake.error_response(400, "fake: model, input and voice are required")
        if body.get("response_format") != "pcm":
            return fake.error_response(400, "fake: only response_format pcm is implemented")
        pcm = tone_pcm(len(body["input"]) * fake.seconds_per_char, SPEECH_RATE_HZ)
        size = fake.speech_chunk_num_bytes
        pieces = [pcm[i : i + size] for i in range(0, len(pcm), size)]
        return StreamingResponse(fake.stream(pieces), media_type="audio/pcm")

    async def models(request: Request) -> Response:
        if (refused := await fake.refusal(request)) is not None:
            return refused
        entry = {"id": fake.model, "object": "model", "created": 0, "owned_by": "fake"}
        return JSONResponse({"object": "list", "data": [entry]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn's server without its polling: it stops as soon as it is told to.

    ``uvicorn.Server`` checks ``should_exit`` every 100 ms and sleeps another
    100 ms while shutting down; a test kit that starts a server per test cannot
    spend 0.2 s on each.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop = asyncio.Event()

    async def main_loop(self) -> None:
        await self.stop.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now
        while self.server_state.tasks:
            await asyncio.wait(set(self.server_state.tasks))
        for server in self.servers:
            await server.wait_closed()


@contextlib.asynccontextmanager
async def run_fake_openai(fake: FakeOpenAI) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 at a free port; yields ``http://127.0.0.1:<port>/v1``."""
    fake._release = asyncio.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        build_app(fake), lifespan="off", log_config=None, access_log=False, http="h11", ws="none"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: raise why
            await asyncio.sleep(0.001)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        fake._release.set()  # hung and stalled responses finish
        server.stop.set()
        await task
        listener.close()
