"""build_runtime's helpers: warm-up reaches the model under every wrapper."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from voicerail.config import warm_up
from voicerail.providers.tts_validation import TTSValidator, ValidatingTTS
from voicerail.routing.faults import FakeLLM, FakeTTS, FaultProfile, FaultyTTS
from voicerail.routing.router import Router


async def test_warm_up_skips_a_hang_injected_under_validation_and_never_chats():
    """A provider faulted to hang, then wrapped for validation (the order the registry
    builds them in), is warmed through its model; the LLM chain costs no request."""
    model = FakeTTS("piper")
    hung = ValidatingTTS(FaultyTTS(model, FaultProfile(hang_rate=1.0)), TTSValidator(), print)
    llm = FakeLLM("openai")
    router = Router(tts=[hung], llm=[llm])
    await asyncio.wait_for(warm_up(SimpleNamespace(router=router)), timeout=5.0)  # type: ignore[arg-type]
    assert model.requests == ["Hello."]
    assert llm.requests == []
