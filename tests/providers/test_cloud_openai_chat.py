"""OpenAIChatLLM against the fake OpenAI server over a real socket, and its pure parts."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence

import httpx
import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import ChatMessage, LLMDelta, ToolCall, ToolSpec
from voicerail.providers.openai_chat import ChatChunkAssembler, OpenAIChatLLM, SSEDecoder, SSEEvent
from voicerail.testing.fake_servers.openai import (
    FakeOpenAI,
    ScriptedReply,
    ScriptedToolCall,
    run_fake_openai,
)

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Book me Tuesday")]
BOOK = ToolSpec(
    "book_appointment",
    "Book an appointment.",
    {"type": "object", "properties": {"day": {"type": "string"}}},
    writes=True,
)


async def collect(llm: OpenAIChatLLM, tools: Sequence[ToolSpec] = ()) -> list[LLMDelta]:
    try:
        return [d async for d in llm.chat(MESSAGES, tools=tools)]
    finally:
        await llm.aclose()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- chat: happy paths ----------------------------------------------------------------


async def test_chat_streams_text_then_finish_with_usage_and_sends_the_documented_request():
    fake = FakeOpenAI(replies=[ScriptedReply("Sure, Tuesday works for me.", prompt_tokens=31)])
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("gpt-test", base_url=base_url, api_key="sk-test")
        deltas = await collect(llm, tools=[BOOK])
    assert [d.text for d in deltas[:-1]] == ["Sure,", " Tuesday", " works", " for", " me."]
    last = deltas[-1]
    assert (last.text, last.tool_call, last.finish_reason) == ("", None, "stop")
    assert last.usage is not None
    assert (last.usage.provider, last.usage.model) == ("openai", "gpt-test")
    assert (last.usage.input_tokens, last.usage.output_tokens) == (31, 5)
    assert last.usage.model_version == "gpt-4o-mini-2024-07-18/fp_fake0001"
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["accept"] == "text/event-stream"
    assert request.body["model"] == "gpt-test"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Book me Tuesday"},
    ]
    assert request.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "book_appointment",
                "description": "Book an appointment.",
                "parameters": BOOK.parameters,
            },
        }
    ]


async def test_tool_call_fragments_are_assembled_into_complete_calls_in_index_order():
    book = ScriptedToolCall("call_a", "book_appointment", {"name": "Maria López", "day": "tue"})
    note = ScriptedToolCall("call_b", "add_note", {"text": "prefers {afternoons}", "n": [1, 2]})
    fake = FakeOpenAI(replies=[ScriptedReply("One moment.", tool_calls=(book, note))])
    async with run_fake_openai(fake) as base_url:
        deltas = await collect(OpenAIChatLLM("m", base_url=base_url), tools=[BOOK])
    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert calls == [
        ToolCall("call_a", "book_appointment", {"name": "Maria López", "day": "tue"}),
        ToolCall("call_b", "add_note", {"text": "prefers {afternoons}", "n": [1, 2]}),
    ]
    kinds = ["text" if d.text else "call" if d.tool_call else "end" for d in deltas]
    assert kinds == ["text", "text", "call", "call", "end"]
    assert deltas[-1].finish_reason == "tool_calls"


async def test_history_with_tool_calls_and_results_is_serialized_as_documented():
    call = ToolCall("call_1", "book_appointment", {"day": "tue"})
    history = [
        ChatMessage("user", "Book me Tuesday"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", '{"ok": true}', tool_call_id="call_1"),
    ]
    fake = FakeOpenAI()
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url, extra_headers={"OpenAI-Organization": "org-1"})
        [d async for d in llm.chat(history)]
        await llm.aclose()
    [request] = fake.requests
    assert request.headers["openai-organization"] == "org-1"
    assert "authorization" not in request.headers  # no key: a local server
    assert "tools" not in request.body
    assert request.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "book_appointment", "arguments": '{"day": "tue"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1"},
    ]


async def test_replies_follow_the_script_in_request_order():
    fake = FakeOpenAI(replies=[ScriptedReply("First."), ScriptedReply("Second.")])
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url)
        texts = ["".join([d.text async for d in llm.chat(MESSAGES)]) for _ in range(3)]
        await llm.aclose()
    assert texts == ["First.", "Second.", "Second."]


async def test_probe_checks_models_and_spends_no_tokens():
    fake = FakeOpenAI()
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url)
        await llm.probe()
        fake.status = 503
        with pytest.raises(ProviderError) as caught:
            await llm.probe()
        await llm.aclose()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models")] * 2
    assert fake.chat_requests() == []
    assert caught.value.status == 503 and caught.value.retryable


# --- chat: failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, ErrorClass.TRANSIENT),
        (500, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
        (401, ErrorClass.PERMANENT),
        (400, ErrorClass.PERMANENT),
    ],
)
async def test_http_error_statuses_are_classified(status, error_class):
    async with run_fake_openai(FakeOpenAI(status=status)) as base_url:
        with pytest.raises(ProviderError) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
    error = caught.value
    assert (error.status, error.error_class, error.provider) == (status, error_class, "openai")
    assert str(error) == f"openai: http {status}: fake: failure with status {status}"


async def test_out_of_quota_429_is_permanent():
    fake = FakeOpenAI(status=429, error_code="insufficient_quota")
    async with run_fake_openai(fake) as base_url:
        with pytest.raises(ProviderError) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
    assert caught.value.status == 429 and caught.value.error_class is ErrorClass.PERMANENT


async def test_wrong_api_key_is_refused_permanently_and_failures_can_be_limited():
    fake = FakeOpenAI(api_key="sk-right")
    async with run_fake_openai(fake) as base_url:
        with pytest.raises(ProviderError) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url, api_key="sk-wrong"))
        fake.status, fake.fail_requests = 503, 1
        llm = OpenAIChatLLM("m", base_url=base_url, api_key="sk-right")
        with pytest.raises(ProviderError, match="http 503"):
            await collect(llm)
        assert (await collect(OpenAIChatLLM("m", base_url=base_url, api_key="sk-right")))[-1]
    assert caught.value.status == 401 and caught.value.error_class is ErrorClass.PERMANENT


async def test_no_first_byte_within_timeout_is_a_provider_timeout():
    async with run_fake_openai(FakeOpenAI(hang=True)) as base_url:
        with pytest.raises(ProviderTimeout) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url, timeout_s=0.1))
    assert caught.value.error_class is ErrorClass.TIMEOUT and caught.value.deadline_s == 0.1


async def test_a_slow_first_byte_within_timeout_is_served_and_past_it_times_out():
    async with run_fake_openai(FakeOpenAI(first_byte_delay_s=0.1)) as base_url:
        deltas = await collect(OpenAIChatLLM("m", base_url=base_url, timeout_s=1.0))
        assert deltas[-1].finish_reason == "stop"
        with pytest.raises(ProviderTimeout):
            await collect(OpenAIChatLLM("m", base_url=base_url, timeout_s=0.02))


async def test_stall_mid_stream_is_a_provider_timeout_after_the_text_so_far():
    received: list[LLMDelta] = []
    async with run_fake_openai(FakeOpenAI(stall_after_chunks=3)) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url, timeout_s=0.1)
        with pytest.raises(ProviderTimeout):
            async for delta in llm.chat(MESSAGES):
                received.append(delta)
        await llm.aclose()
    assert [d.text for d in received] == ["Sure,", " Tuesday"]


async def test_connection_dropped_mid_stream_is_transient():
    async with run_fake_openai(FakeOpenAI(drop_after_chunks=2)) as base_url:
        with pytest.raises(ProviderError, match="RemoteProtocolError") as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
    assert caught.value.error_class is ErrorClass.TRANSIENT and caught.value.status is None


async def test_error_object_inside_the_stream_is_a_provider_error():
    async with run_fake_openai(FakeOpenAI(stream_error_after_chunks=2)) as base_url:
        with pytest.raises(ProviderError) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
    assert str(caught.value) == "openai: error in stream: fake: failure mid-stream"
    assert caught.value.error_class is ErrorClass.TRANSIENT


async def test_connection_refused_is_transient():
    with pytest.raises(ProviderError, match="ConnectError") as caught:
        await collect(OpenAIChatLLM("m", base_url=closed_port_url()))
    assert caught.value.retryable and not isinstance(caught.value, ProviderTimeout)


async def test_stream_ending_cleanly_before_done_is_transient():
    def handler(request: httpx.Request) -> httpx.Response:
        chunk = {"model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\n")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    llm = OpenAIChatLLM("m", base_url="http://fake/v1", http_client=client)
    with pytest.raises(ProviderError, match=r"stream ended before \[DONE\]") as caught:
        await collect(llm)
    await client.aclose()
    assert caught.value.retryable


async def test_aclose_mid_stream_closes_the_connection():
    fake = FakeOpenAI(stall_after_chunks=3)
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url)
        stream = llm.chat(MESSAGES)
        assert (await anext(stream)).text == "Sure,"
        await stream.aclose()
        await fake.wait_disconnect()
        await llm.aclose()
    assert fake.disconnects == 1


# --- chat: the pure parts -------------------------------------------------------------


def test_sse_decoder_joins_data_lines_and_skips_comments():
    decoder = SSEDecoder()
    lines = [": keep-alive", "event: error", 'data: {"a":', "data: 1}", "", "data:[DONE]"]
    events = [decoder.receive_line(line) for line in lines]
    assert events == [None, None, None, None, SSEEvent("error", '{"a":\n1}'), None]
    assert decoder.end() == SSEEvent("message", "[DONE]")
    assert decoder.end() is None


def test_assembler_accepts_argument_objects_and_missing_ids():
    assembler = ChatChunkAssembler("ollama", "llama3.2")
    fragment = {"index": 0, "function": {"name": "book", "arguments": {"day": "tue"}}}
    chunk = {"model": "llama3.2", "choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}
    assert assembler.receive_chunk(chunk) == []
    *calls, end = assembler.end()
    assert calls == [LLMDelta(tool_call=ToolCall("call_0", "book", {"day": "tue"}))]
    assert end.finish_reason == "tool_calls"
    assert end.usage is not None and end.usage.model_version == "llama3.2"


def test_assembler_rejects_arguments_that_are_not_a_json_object():
    assembler = ChatChunkAssembler("vllm", "m")
    fragment = {"index": 0, "id": "c1", "function": {"name": "book", "arguments": '{"day": '}}
    choice = {"index": 0, "delta": {"tool_calls": [fragment]}, "finish_reason": "stop"}
    with pytest.raises(ProviderError, match="'book' has arguments that are not a json object") as e:
        assembler.receive_chunk({"choices": [choice]})
    assert e.value.error_class is ErrorClass.PERMANENT


async def test_invalid_tool_call_json_from_the_server_is_permanent_after_the_text():
    bad = ScriptedToolCall("call_x", "book_appointment", '{"day": "tue"')
    fake = FakeOpenAI(replies=[ScriptedReply("Okay.", tool_calls=(bad,))])
    received: list[LLMDelta] = []
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url)
        with pytest.raises(ProviderError, match="'book_appointment' has arguments") as caught:
            async for delta in llm.chat(MESSAGES, tools=[BOOK]):
                received.append(delta)
        await llm.aclose()
    assert [d.text for d in received] == ["Okay."]
    assert caught.value.error_class is ErrorClass.PERMANENT and not caught.value.retryable


@pytest.mark.parametrize(
    ("error", "error_class", "status"),
    [
        ({"message": "bad", "type": "BadRequestError", "code": 400}, ErrorClass.PERMANENT, 400),
        ({"message": "busy", "type": "server_error", "code": 503}, ErrorClass.TRANSIENT, 503),
        ({"message": "bad", "type": "invalid_request_error"}, ErrorClass.PERMANENT, None),
        ("overloaded", ErrorClass.TRANSIENT, None),
    ],
)
def test_errors_inside_the_stream_are_classified_by_their_fields(error, error_class, status):
    with pytest.raises(ProviderError) as caught:
        ChatChunkAssembler("vllm", "m").receive_chunk({"error": error})
    assert (caught.value.error_class, caught.value.status) == (error_class, status)
