"""OpenAI-compatible Chat Completions, streamed (OpenAI, vLLM, Ollama, llama.cpp server).

Wire protocol (https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming, read 2026-11):
``POST {base_url}/chat/completions`` with ``stream: true``; the response is
Server-Sent Events, one ``data: {chat.completion.chunk}`` line per event and a
final ``data: [DONE]``. Each chunk's ``choices[0].delta`` carries ``content``
text or ``tool_calls`` fragments, keyed by ``index``: the first fragment of a
call has its ``id`` and ``function.name``, later ones append to
``function.arguments`` (a JSON string). ``stream_options.include_usage`` adds a
last chunk with ``usage`` (``prompt_tokens``, ``completion_tokens``). Errors are
HTTP statuses with ``{"error": {"message", "type", "code"}}`` bodies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout, classify_http_status
from voicerail.providers.base import (
    ChatMessage,
    LLMCapabilities,
    LLMDelta,
    ToolCall,
    ToolSpec,
    Usage,
)


def _message(message: ChatMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return body


def _tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


class OpenAIChatLLM:
    """A :class:`~voicerail.providers.base.LanguageModel` over an OpenAI-compatible API.

    Args:
        model: model name sent in the request.
        base_url: API root including ``/v1``.
        api_key: sent as ``Authorization: Bearer``; None for servers without auth.
        name: provider name in events and routing.
        timeout_s: connect and read timeout, seconds (routing sets tighter deadlines).
        http_client: an ``httpx.AsyncClient`` to use (tests, connection pooling).
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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = http_client or httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout_s)
        )
        self._headers = headers
        self._owns_client = http_client is None

    async def aclose(self) -> None:
        """Close the HTTP connection pool (when this object created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def probe(self) -> None:
        """Check health with ``GET /models``: no tokens are spent.

        Raises:
            ProviderError: the endpoint is unreachable or refuses.
        """
        try:
            response = await self._client.get(f"{self.base_url}/models", headers=self._headers)
        except httpx.HTTPError as exc:
            raise ProviderError(f"probe failed: {exc!r}", provider=self.name) from exc
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.text)

    def _status_error(self, status: int, body: str) -> ProviderError:
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body[:200]
        return ProviderError(
            f"http {status}: {message}",
            provider=self.name,
            status=status,
            error_class=classify_http_status(status),
        )

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [_tool(t) for t in tools]
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._client.stream("POST", url, json=body, headers=self._headers) as resp:
                if resp.status_code != 200:
                    raise self._status_error(resp.status_code, (await resp.aread()).decode())
                async for delta in self._parse(resp.aiter_lines()):
                    yield delta
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"timed out: {exc!r}", provider=self.name, deadline_s=0) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"connection failed: {exc!r}", provider=self.name) from exc

    async def _parse(self, lines: AsyncIterator[str]) -> AsyncIterator[LLMDelta]:
        calls: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage: Usage | None = None
        version: str | None = None
        done = False
        async for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise ProviderError(
                    f"stream error: {chunk['error'].get('message')}", provider=self.name
                )
            version = chunk.get("system_fingerprint") or chunk.get("model") or version
            if chunk.get("usage"):
                usage = Usage(
                    self.name,
                    self.model,
                    model_version=version,
                    input_tokens=chunk["usage"].get("prompt_tokens", 0),
                    output_tokens=chunk["usage"].get("completion_tokens", 0),
                )
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield LLMDelta(text=delta["content"])
                for fragment in delta.get("tool_calls") or []:
                    call = calls.setdefault(fragment["index"], {"arguments": ""})
                    call["id"] = fragment.get("id") or call.get("id")
                    function = fragment.get("function") or {}
                    call["name"] = function.get("name") or call.get("name")
                    call["arguments"] += function.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
        if not done:
            raise ProviderError("stream ended before [DONE]", provider=self.name)
        for index in sorted(calls):
            call = calls[index]
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except ValueError as exc:
                raise ProviderError(
                    f"tool call {call.get('name')!r} has invalid JSON arguments",
                    provider=self.name,
                    error_class=ErrorClass.PERMANENT,
                ) from exc
            yield LLMDelta(tool_call=ToolCall(str(call["id"]), str(call["name"]), arguments))
        yield LLMDelta(finish_reason=finish or "stop", usage=usage)
