"""CurrentCallLLM: one agent-wide LLM that routes each chat for the running call."""

from __future__ import annotations

import contextvars

import pytest

from voicerail.events.model import Event, EventKind
from voicerail.providers.base import ChatMessage
from voicerail.routing.call_llm import NO_CALL, CurrentCallLLM
from voicerail.routing.faults import FakeLLM, FakeTTS, FaultProfile
from voicerail.routing.router import Router, RoutingConfig

FAST = RoutingConfig(ttfb_timeout_s=0.5, hedge=False)


async def test_each_chat_fails_over_under_the_id_of_the_call_running_it():
    down = FakeLLM("down", reply="never", profile=FaultProfile(error_rates={"503": 1.0}))
    up = FakeLLM("up", reply="hello there")
    router = Router(llm=[down, up], config=FAST)
    events: list[Event] = []
    call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call", default=None)
    llm = CurrentCallLLM(router, call_id.get, events.append)

    async def chat_in(call: str) -> str:
        call_id.set(call)
        return "".join([d.text async for d in llm.chat([ChatMessage("user", "hi")])])

    assert await chat_in("call-a") == "hello there"
    assert await chat_in("call-b") == "hello there"
    attempts = [
        (e.call_id, e.provider, e.outcome) for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED
    ]
    assert attempts == [
        ("call-a", "down", "error"),
        ("call-a", "up", "ok"),
        ("call-b", "down", "error"),
        ("call-b", "up", "ok"),
    ]
    assert (llm.name, llm.model) == ("router", "down-model")


async def test_a_chat_outside_any_call_is_recorded_under_no_call():
    events: list[Event] = []
    llm = CurrentCallLLM(Router(llm=[FakeLLM("only")], config=FAST), lambda: None, events.append)
    _ = [d async for d in llm.chat([])]
    assert {e.call_id for e in events} == {NO_CALL}


def test_a_router_without_an_llm_chain_is_refused():
    with pytest.raises(ValueError, match="no LLM chain"):
        CurrentCallLLM(Router(tts=[FakeTTS()]), lambda: None, print)
