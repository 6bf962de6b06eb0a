"""OpenAIChatLLM against the fake OpenAI server over a real socket."""

from __future__ import annotations

import pytest

from voicerail.errors import ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import ChatMessage, ToolSpec
from voicerail.providers.openai_chat import OpenAIChatLLM
from voicerail.testing.fake_servers.openai import FakeOpenAI, run_fake_openai

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Book me Tuesday")]
BOOK = ToolSpec("book_appointment", "Book.", {"type": "object", "properties": {}}, writes=True)


async def collect(llm: OpenAIChatLLM, tools=()):
    try:
        return [d async for d in llm.chat(MESSAGES, tools=tools)]
    finally:
        await llm.aclose()


async def test_streams_text_then_usage_and_sends_the_documented_request():
    fake = FakeOpenAI(reply="Sure, Tuesday works for me.")
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("gpt-test", base_url=base_url, api_key="sk-test")
        deltas = await collect(llm, tools=[BOOK])
    assert "".join(d.text for d in deltas) == "Sure, Tuesday works for me."
    assert len([d for d in deltas if d.text]) == 3  # streamed, not one blob
    last = deltas[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None and last.usage.input_tokens == 12
    assert last.usage.model_version == "fp_test1"
    [body] = fake.requests
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-test"
    assert body["messages"][1] == {"role": "user", "content": "Book me Tuesday"}
    assert body["tools"][0]["function"]["name"] == "book_appointment"
    assert fake.headers[0]["authorization"] == "Bearer sk-test"


async def test_tool_call_fragments_are_assembled():
    args = {"name": "Maria Lopez", "day": "2026-11-24", "time": "15:00"}
    fake = FakeOpenAI(reply="", tool_calls=[("call_1", "book_appointment", args)])
    async with run_fake_openai(fake) as base_url:
        deltas = await collect(OpenAIChatLLM("m", base_url=base_url), tools=[BOOK])
    [call] = [d.tool_call for d in deltas if d.tool_call]
    assert (call.id, call.name, call.arguments) == ("call_1", "book_appointment", args)
    assert deltas[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
        (401, ErrorClass.PERMANENT),
        (400, ErrorClass.PERMANENT),
    ],
)
async def test_http_errors_are_classified(status, error_class):
    async with run_fake_openai(FakeOpenAI(status=status)) as base_url:
        with pytest.raises(ProviderError) as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
        llm = OpenAIChatLLM("m", base_url=base_url)
        with pytest.raises(ProviderError):
            await llm.probe()
        await llm.aclose()
    assert caught.value.status == status and caught.value.error_class is error_class
    assert f"fake error {status}" in str(caught.value)


async def test_dropped_stream_is_a_transient_error():
    async with run_fake_openai(FakeOpenAI(drop_after_chunks=1)) as base_url:
        with pytest.raises(ProviderError, match="before \\[DONE\\]") as caught:
            await collect(OpenAIChatLLM("m", base_url=base_url))
    assert caught.value.retryable


async def test_read_timeout_is_a_provider_timeout():
    async with run_fake_openai(FakeOpenAI(first_byte_delay_s=0.5)) as base_url:
        with pytest.raises(ProviderTimeout):
            await collect(OpenAIChatLLM("m", base_url=base_url, timeout_s=0.1))


async def test_probe_spends_no_tokens():
    fake = FakeOpenAI()
    async with run_fake_openai(fake) as base_url:
        llm = OpenAIChatLLM("m", base_url=base_url)
        await llm.probe()
        await llm.aclose()
    assert fake.requests == []
