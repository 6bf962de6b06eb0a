"""OpenAI-compatible Chat Completions, streamed (OpenAI, vLLM, Ollama, llama.cpp server).

Wire protocol (https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming, read 2026-11):

* ``POST {base_url}/chat/completions`` with ``stream: true`` and
  ``stream_options: {"include_usage": true}``; ``Authorization: Bearer <key>``.
* The reply is Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html):
  one ``data: <chat.completion.chunk JSON>`` event per chunk, then ``data: [DONE]``.
* A chunk's ``choices[0].delta`` holds ``content`` text or ``tool_calls``
  fragments keyed by ``index``: a call's first fragment carries its ``id`` and
  ``function.name``; later ones append to ``function.arguments``, a JSON string.
  ``choices[0].finish_reason`` is set on the last choice chunk.
* With ``include_usage`` one more chunk, with empty ``choices``, carries ``usage``
  (``prompt_tokens``, ``completion_tokens``) just before ``[DONE]``. Every chunk
  names the ``model`` that answered and, on OpenAI, a ``system_fingerprint`` of the
  backend configuration; together they are the model version.
* Errors before the stream are HTTP statuses with an error envelope; an error
  during the stream is a chunk ``{"error": {...}}`` (see ``_http.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers._http import (
    bearer_headers,
    new_client,
    status_error,
    stream_error,
    transport_error,
)
from voicerail.providers.base import (
    ChatMessage,
    LLMCapabilities,
    LLMDelta,
    ToolCall,
    ToolSpec,
    Usage,
)

_DONE = "[DONE]"


def serialize_message(message: ChatMessage) -> dict[str, Any]:
    """A :class:`ChatMessage` as a Chat Completions ``messages`` item."""
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_call_id is not None:
        body["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        body["content"] = message.content or None  # an assistant turn of only tool calls
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return body


def serialize_tool(tool: ToolSpec) -> dict[str, Any]:
    """A :class:`ToolSpec` as a Chat Completions ``tools`` item."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched Server-Sent Event: its type (``"message"`` by default) and data."""

    event: str
    data: str


class SSEDecoder:
    """Server-Sent Events line decoder (WHATWG HTML §9.2.6), without I/O.

    Feed it lines without their line terminator; it returns an event when a
    blank line completes one. Comments (``:`` lines, used as keep-alives by some
    gateways) and ``id``/``retry`` fields are ignored.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def receive_line(self, line: str) -> SSEEvent | None:
        """Take one line; return the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def end(self) -> SSEEvent | None:
        """The stream ended: return an event left without its blank line, if any."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        event = SSEEvent(self._event or "message", "\n".join(self._data)) if self._data else None
        self._event, self._data = "", []
        return event


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatChunkAssembler:
    """Turn ``chat.completion.chunk`` objects into :class:`LLMDelta`, without I/O.

    Text is passed on at once; tool-call fragments are accumulated by ``index``
    and handed out as complete :class:`ToolCall` objects when the choice finishes;
    the finish reason and usage come last, from :meth:`end`.

    Args:
        provider: configured provider name, for errors and usage.
        model: model name as configured, for usage.
    """

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model
        self._calls: dict[int, _PartialCall] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._model_answered: str | None = None
        self._fingerprint: str | None = None

    def receive_chunk(self, chunk: dict[str, Any]) -> list[LLMDelta]:
        """Take one decoded chunk; return the deltas it completes.

        Raises:
            ProviderError: the chunk is an error object (classified as in
                ``_http.stream_error``), or a tool call's arguments are not a JSON
                object (permanent).
        """
        if "error" in chunk:
            raise stream_error(self.provider, chunk["error"])
        self._model_answered = chunk.get("model") or self._model_answered
        self._fingerprint = chunk.get("system_fingerprint") or self._fingerprint
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        deltas: list[LLMDelta] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is never requested
            delta = choice.get("delta") or {}
            if delta.get("content"):
                deltas.append(LLMDelta(text=delta["content"]))
            for fragment in delta.get("tool_calls") or []:
                self._receive_fragment(fragment)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                deltas.extend(self._complete_calls())
        return deltas

    def end(self) -> list[LLMDelta]:
        """``[DONE]`` arrived: return calls still open and the final delta.

        Raises:
            ProviderError: a tool call's arguments are not a JSON object (permanent).
        """
        deltas = self._complete_calls()
        finish_reason = self._finish_reason or ("tool_calls" if deltas else "stop")
        deltas.append(LLMDelta(finish_reason=finish_reason, usage=self._make_usage()))
        return deltas

    def _receive_fragment(self, fragment: dict[str, Any]) -> None:
        call = self._calls.setdefault(int(fragment.get("index", 0)), _PartialCall())
        call.id = fragment.get("id") or call.id
        function = fragment.get("function") or {}
        call.name = function.get("name") or call.name
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send the object, not a string
            arguments = json.dumps(arguments)
        if arguments:
            call.arguments.append(arguments)

    def _complete_calls(self) -> list[LLMDelta]:
        deltas = []
        for index in sorted(self._calls):
            call = self._calls[index]
            text = "".join(call.arguments) or "{}"
            try:
                arguments = json.loads(text)
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                # Permanent: the request was served and the model answered badly;
                # routing moves to the next provider rather than re-asking this one.
                raise ProviderError(
                    f"tool call {call.name!r} has arguments that are not a json object "
                    f"({len(text)} characters)",
                    provider=self.provider,
                    error_class=ErrorClass.PERMANENT,
                )
            call_id = call.id or f"call_{index}"  # Ollama's older builds send no id
            deltas.append(LLMDelta(tool_call=ToolCall(call_id, call.name, arguments)))
        self._calls.clear()
        return deltas

    def _make_usage(self) -> Usage | None:
        if self._usage is None and self._model_answered is None:
            return None
        version = self._model_answered
        if version and self._fingerprint:
            version = f"{version}/{self._fingerprint}"
        usage = self._usage or {}
        return Usage(
            self.provider,
            self.model,
            model_version=version,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )


class OpenAIChatLLM:
    """A :class:`~voicerail.providers.base.LanguageModel` on an OpenAI-compatible API.

    One streamed ``POST /chat/completions`` per :meth:`chat`; the HTTP connection
    pool is kept between requests.

    Args:
        model: model name sent in the request.
        base_url: API root including the version (``…/v1``).
        api_key: sent as ``Authorization: Bearer``; None for servers without auth
            (a local vLLM, Ollama or llama.cpp server).
        name: provider name in events and routing.
        timeout_s: connect timeout, and longest wait for each piece of the reply
            (first byte included), in seconds. Routing sets tighter deadlines.
        extra_headers: more request headers (``OpenAI-Organization``, a gateway's).
        http_client: an ``httpx.AsyncClient`` to use instead of an own one (shared
            pools, tests); it is not closed by :meth:`aclose`.
    """

    capabilities = LLMCapabilities(tools=True, streaming=True)

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        name: str = "openai",
        timeout_s: float = 30.0,
        extra_headers: dict[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model, self.name, self.timeout_s = model, name, timeout_s
        self.base_url = base_url.rstrip("/")
        self._headers = bearer_headers(api_key, extra_headers)
        self._client = http_client
        self._owns_client = http_client is None

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, inside the event loop that will use it.
        if self._client is None:
            self._client = new_client(self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connection pool, when this object created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def probe(self) -> None:
        """Check health with ``GET /models``, which spends no tokens.

        Raises:
            ProviderError: the endpoint is unreachable or answers an error status.
            ProviderTimeout: no answer within ``timeout_s``.
        """
        try:
            response = await self._http().get(f"{self.base_url}/models", headers=self._headers)
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc, self.timeout_s) from exc
        if response.status_code != 200:
            raise status_error(self.name, response.status_code, response.text)

    def request_body(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> dict[str, Any]:
        """The JSON body :meth:`chat` sends."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [serialize_message(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [serialize_tool(t) for t in tools]
        return body

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        """Stream a reply to ``messages``.

        Yields:
            Text deltas as they arrive, then complete tool calls, then one delta
            with ``finish_reason`` and ``usage`` (``model_version`` is the
            answering ``model``, plus ``/system_fingerprint`` when sent).

        Raises:
            ProviderError: an HTTP error status (``status`` set, classified by
                ``_http.status_error``); an error object in the stream; a stream
                that ended before ``[DONE]`` or was cut (transient); tool-call
                arguments that are not a JSON object (permanent).
            ProviderTimeout: no connection, or no data for ``timeout_s``.
        """
        url = f"{self.base_url}/chat/completions"
        body = self.request_body(messages, tools)
        headers = {**self._headers, "Accept": "text/event-stream"}
        try:
            async with self._http().stream("POST", url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    raise status_error(self.name, response.status_code, text)
                async for delta in self._deltas(response.aiter_lines()):
                    yield delta
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc, self.timeout_s) from exc

    async def _deltas(self, lines: AsyncIterator[str]) -> AsyncIterator[LLMDelta]:
        decoder = SSEDecoder()
        assembler = ChatChunkAssembler(self.name, self.model)
        async for line in lines:
            event = decoder.receive_line(line)
            if event is None:
                continue
            if event.data == _DONE:
                for delta in assembler.end():
                    yield delta
                return
            for delta in assembler.receive_chunk(self._decode(event)):
                yield delta
        event = decoder.end()
        if event is not None and event.data == _DONE:
            for delta in assembler.end():
                yield delta
            return
        raise ProviderError("stream ended before [DONE]", provider=self.name)

    def _decode(self, event: SSEEvent) -> dict[str, Any]:
        try:
            chunk = json.loads(event.data)
        except ValueError:
            raise ProviderError(
                f"invalid json in a {len(event.data)}-character event", provider=self.name
            ) from None
        if not isinstance(chunk, dict):
            raise ProviderError(
                f"expected a json object, got {type(chunk).__name__}", provider=self.name
            )
        if event.event == "error" and "error" not in chunk:
            chunk = {"error": chunk}  # llama.cpp names the event instead of wrapping it
        return chunk
