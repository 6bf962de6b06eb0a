"""The router against fault-injecting fake providers, on virtual time: the event
loop is a :class:`~voicerail.testing.clock.VirtualTimeLoop` (``conftest.py``) and each
router reads an
:class:`~voicerail.testing.clock.AutoClock`, so delays and deadlines take no real
time and each test runs the same way every time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicerail.errors import ConfigError, ProviderError, ProviderUnavailable
from voicerail.events.model import Event, EventKind, Stage
from voicerail.providers.base import ChatMessage
from voicerail.routing.faults import Delay, FakeLLM, FakeSTT, FakeTTS, FaultProfile
from voicerail.routing.router import Router, RoutingConfig
from voicerail.testing.clock import AutoClock, FakeClock

SENTENCE = "your appointment is on Tuesday at three in the afternoon"
FAST = RoutingConfig(ttfb_timeout_s=0.2, idle_timeout_s=0.2, hedge=False, min_attempt_s=0.05)


def virtual_router(*args: Any, **kwargs: Any) -> Router:
    """A router reading the virtual clock, unless the test passes its own clock."""
    if len(args) < 5 and "clock" not in kwargs:
        kwargs["clock"] = AutoClock()
    return Router(*args, **kwargs)


def bind(router: Router) -> tuple:
    events: list[Event] = []
    return router.bind("call-1", events.append), events


async def speak(tts, text: str = SENTENCE) -> list[str]:
    return [chunk.text async for chunk in tts.synthesize(text)]


def attempts(events: list[Event]) -> list[tuple[str | None, str | None]]:
    return [(e.provider, e.outcome) for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED]


async def test_503_fails_over_to_the_next_tts():
    primary = FakeTTS("primary", profile=FaultProfile(error_rates={"503": 1.0}))
    router = virtual_router(tts=[primary, FakeTTS("backup")], config=FAST)
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("primary", "error"), ("backup", "ok")]
    [failover] = [e for e in events if e.kind is EventKind.PROVIDER_FAILED_OVER]
    assert failover.provider == "backup" and failover.data["from"] == "primary"
    error = next(e for e in events if e.outcome == "error")
    assert error.error_class == "transient" and error.data["attempt"] == 1


async def test_hung_tts_is_abandoned_at_the_first_byte_deadline():
    primary = FakeTTS("primary", profile=FaultProfile(hang_rate=1.0))
    router = virtual_router(tts=[primary, FakeTTS("backup")], config=FAST)
    providers, events = bind(router)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await speak(providers.tts) == SENTENCE.split()
    assert loop.time() - started < 1.0
    assert attempts(events)[0] == ("primary", "error")
    assert events[0].error_class == "timeout"


async def test_mid_sentence_drop_continues_without_repeating_or_losing_words():
    primary = FakeTTS("primary", profile=FaultProfile(drop_rate=1.0, drop_after_chunks=4))
    backup = FakeTTS("backup")
    router = virtual_router(tts=[primary, backup], config=FAST)
    providers, _ = bind(router)
    heard = await speak(providers.tts)
    assert heard == SENTENCE.split()
    assert backup.requests == [" ".join(SENTENCE.split()[4:])]


async def test_mid_sentence_hang_is_caught_by_the_idle_deadline():
    primary = FakeTTS("primary", profile=FaultProfile(hang_after_chunks=2))
    router = virtual_router(tts=[primary, FakeTTS("backup")], config=FAST)
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("primary", "error"), ("backup", "ok")]


async def test_stt_failover_replays_the_buffered_utterance():
    primary = FakeSTT("primary", profile=FaultProfile(error_rates={"500": 1.0}))
    backup = FakeSTT("backup", transcript="book me tuesday")
    router = virtual_router(stt=[primary, backup], config=FAST)
    providers, _ = bind(router)

    async def audio() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"\x00\x00" * 160

    finals = [
        t.text async for t in providers.stt.transcribe(audio(), sample_rate_hz=16000) if t.is_final
    ]
    assert finals == ["book me tuesday"]
    assert primary.received_num_bytes == backup.received_num_bytes == [1600]


async def test_permanent_errors_everywhere_raise_provider_unavailable():
    profile = FaultProfile(error_rates={"401": 1.0})
    router = virtual_router(
        tts=[FakeTTS("a", profile=profile), FakeTTS("b", profile=profile)], config=FAST
    )
    providers, events = bind(router)
    with pytest.raises(ProviderUnavailable) as caught:
        await speak(providers.tts)
    assert caught.value.error_class.value == "permanent"
    assert [e.error_class for e in events if e.outcome == "error"] == ["permanent"] * 2


async def test_hedge_starts_the_backup_when_the_primary_is_slow_and_takes_the_faster():
    slow = FakeTTS("slow", profile=FaultProfile(first_byte_delay=Delay(value_s=0.5)))
    config = RoutingConfig(ttfb_timeout_s=2.0, idle_timeout_s=1.0, hedge=True)
    router = virtual_router(tts=[slow, FakeTTS("fast")], config=config)
    router.latency["slow"].default_s = 0.05
    providers, events = bind(router)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await speak(providers.tts) == SENTENCE.split()
    assert loop.time() - started < 0.4
    assert sorted(attempts(events)) == [("fast", "ok"), ("slow", "hedge_lost")]
    assert next(e for e in events if e.provider == "fast").data["hedged"] is True


async def test_caller_cancellation_is_not_counted_against_the_provider():
    slow = FakeTTS("slow", profile=FaultProfile(chunk_delay=Delay(value_s=0.05)))
    router = virtual_router(tts=[slow], config=FAST)
    providers, events = bind(router)
    stream = providers.tts.synthesize(SENTENCE)
    await stream.__anext__()
    await stream.aclose()
    assert attempts(events) == [("slow", "cancelled")]
    assert router.breakers["slow"].state(0.0).value == "closed"


async def test_breaker_opens_then_a_probe_closes_it():
    class ProbedTTS(FakeTTS):
        healthy = False

        async def probe(self) -> None:
            if not self.healthy:
                raise ProviderError("still down", provider=self.name)

    flaky = ProbedTTS("flaky", profile=FaultProfile(error_rates={"503": 1.0}))
    config = RoutingConfig(
        ttfb_timeout_s=0.2, hedge=False, breaker_failures=2, breaker_cooldown_s=0.05
    )
    router = virtual_router(tts=[flaky, FakeTTS("backup")], config=config)
    providers, _ = bind(router)
    for _ in range(3):
        await speak(providers.tts)
    assert len(flaky.requests) == 2  # the third sentence skipped the open breaker
    await asyncio.sleep(0.06)
    assert await router.run_probes() == {"flaky": False}
    await asyncio.sleep(0.06)
    flaky.healthy = True
    assert await router.run_probes() == {"flaky": True}
    assert router.breakers["flaky"].state(router.clock.monotonic()).value == "closed"


async def test_retry_budget_caps_hedges_but_never_blocks_failover():
    config = RoutingConfig(
        ttfb_timeout_s=1.0, hedge=True, retry_ratio=0.0, min_retries_per_window=1
    )
    slow = FaultProfile(first_byte_delay=Delay(value_s=0.15))
    router = virtual_router(tts=[FakeTTS("a", profile=slow), FakeTTS("b")], config=config)
    router.latency["a"].default_s = 0.02
    providers, events = bind(router)
    await speak(providers.tts)  # the one hedge the budget allows
    await speak(providers.tts)  # budget spent: waits for the slow primary
    assert [e.data["hedged"] for e in events if e.outcome == "ok"] == [True, False]
    broken = FaultProfile(error_rates={"503": 1.0})
    router = virtual_router(tts=[FakeTTS("c", profile=broken), FakeTTS("d")], config=config)
    providers, _ = bind(router)
    for _ in range(3):  # failover after errors is never refused
        assert await speak(providers.tts) == SENTENCE.split()


async def test_llm_restarts_on_the_next_provider_and_reports_version_changes():
    llm_a = FakeLLM("a", reply="hello there", profile=FaultProfile(error_rates={"429": 1.0}))
    llm_b = FakeLLM("b", reply="hi", profile=FaultProfile(model_version="b-1"))
    router = virtual_router(llm=[llm_a, llm_b], config=FAST)
    providers, events = bind(router)
    text = "".join([d.text async for d in providers.llm.chat([])])
    assert text == "hi"
    llm_b.profile = FaultProfile(model_version="b-2")
    _ = [d async for d in providers.llm.chat([])]
    changed = [e for e in events if e.kind is EventKind.PROVIDER_VERSION_CHANGED]
    assert [(e.data["previous"], e.data["current"]) for e in changed] == [("b-1", "b-2")]


async def test_a_hung_primary_overtaken_by_hedges_trips_its_breaker():
    hung = FakeTTS("hung", profile=FaultProfile(hang_rate=1.0))
    config = RoutingConfig(ttfb_timeout_s=2.0, hedge=True, breaker_failures=2)
    router = virtual_router(tts=[hung, FakeTTS("backup")], config=config)
    router.latency["hung"].default_s = 0.02
    providers, events = bind(router)
    for _ in range(3):
        assert await speak(providers.tts) == SENTENCE.split()
    assert len(hung.requests) == 2  # the open breaker spared the third sentence
    lost = [e for e in events if e.outcome == "hedge_lost"]
    assert [e.error_class for e in lost] == ["timeout", "timeout"]


async def test_a_refused_hedge_leaves_the_backup_for_failover():
    config = RoutingConfig(
        ttfb_timeout_s=0.1, hedge=True, retry_ratio=0.0, min_retries_per_window=0
    )
    router = virtual_router(
        tts=[FakeTTS("hung", profile=FaultProfile(hang_rate=1.0)), FakeTTS("backup")],
        config=config,
    )
    router.latency["hung"].default_s = 0.02
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("hung", "error"), ("backup", "ok")]


async def test_concurrency_limit_queues_then_fails_over_at_the_queue_deadline():
    slow = FakeTTS("limited", profile=FaultProfile(chunk_delay=Delay(value_s=0.05)))
    config = RoutingConfig(
        ttfb_timeout_s=1.0, hedge=False, max_concurrency=1, queue_timeout_s=0.05, breaker_failures=1
    )
    router = virtual_router(tts=[slow, FakeTTS("overflow")], config=config)
    providers, events = bind(router)
    first, second = await asyncio.gather(speak(providers.tts), speak(providers.tts))
    assert first == second == SENTENCE.split()
    assert sorted(attempts(events)) == [
        ("limited", "error"),
        ("limited", "ok"),
        ("overflow", "ok"),
    ]
    error = next(e for e in events if e.outcome == "error")
    assert "concurrency limit" in error.data["error"]
    assert router.slots["limited"]._value == 1  # every slot was given back
    # our own queue refused it: not held against the provider
    assert router.breakers["limited"].state(router.clock.monotonic()).value == "closed"


async def test_slot_waits_are_reported_to_the_admission_signal():
    slow = FakeTTS("limited", profile=FaultProfile(chunk_delay=Delay(value_s=0.05)))
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=False, max_concurrency=1, queue_timeout_s=1.0)
    router = virtual_router(tts=[slow], config=config)
    waits: list[float] = []
    router.on_queue_wait = waits.append
    providers, _ = bind(router)
    await asyncio.gather(speak(providers.tts), speak(providers.tts))
    assert len(waits) == 2
    assert min(waits) < 0.01  # the first took the free slot
    assert max(waits) >= 0.04  # the second waited for the first's slow chunks


async def test_attempt_events_carry_usage_and_cost_from_the_price_table():
    from voicerail.routing.router import Price

    router = virtual_router(
        tts=[FakeTTS("priced", profile=FaultProfile(model_version="v7"))],
        config=FAST,
        prices={"priced": Price(per_1k_characters=0.5)},
    )
    providers, events = bind(router)
    await speak(providers.tts)
    [ok] = [e for e in events if e.outcome == "ok"]
    assert ok.data["characters"] == len(SENTENCE)
    assert ok.data["cost_usd"] == pytest.approx(len(SENTENCE) / 1000 * 0.5)
    assert ok.data["model_version"] == "v7"


async def test_mid_sentence_drop_without_chunk_texts_resumes_from_the_audio_estimate():
    """Chunk texts are empty: delivered words come from audio seconds x words per second."""
    primary = FakeTTS(
        "primary", chunk_texts=False, profile=FaultProfile(drop_rate=1.0, drop_after_chunks=4)
    )
    backup = FakeTTS("backup")
    router = virtual_router(tts=[primary, backup], config=FAST)
    providers, _ = bind(router)
    chunks = [chunk async for chunk in providers.tts.synthesize(SENTENCE)]
    words = SENTENCE.split()
    assert backup.requests == [" ".join(words[4:])]
    assert sum(len(c.pcm) for c in chunks) == len(primary.pcm_for(len(words)))
    # the 4 words known by estimate are named on the backup's first chunk with text
    assert " ".join(c.text for c in chunks if c.text) == SENTENCE


async def test_a_failover_at_another_sample_rate_keeps_the_first_rate():
    """The consumer builds one resampler per sentence: the rate must not change."""
    primary = FakeTTS("primary", 16000, profile=FaultProfile(drop_rate=1.0, drop_after_chunks=3))
    backup = FakeTTS("backup", 8000)
    router = virtual_router(tts=[primary, backup], config=FAST)
    providers, _ = bind(router)
    chunks = [chunk async for chunk in providers.tts.synthesize(SENTENCE)]
    assert {c.sample_rate_hz for c in chunks} == {16000}
    assert [c.text for c in chunks] == SENTENCE.split()
    assert chunks[-1].usage is not None
    expected = len(primary.pcm_for(len(SENTENCE.split())))
    assert abs(sum(len(c.pcm) for c in chunks) - expected) <= 2 * 64


async def test_attempt_and_failover_events_carry_their_fields():
    primary = FakeTTS("primary", profile=FaultProfile(drop_rate=1.0, drop_after_chunks=2))
    backup = FakeTTS("backup", profile=FaultProfile(model_version="b-3"))
    router = virtual_router(tts=[primary, backup], config=FAST)
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    failed, ok = [e for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED]
    assert (failed.stage, failed.provider, failed.model) == ("tts", "primary", "primary-model")
    assert (failed.outcome, failed.error_class) == ("error", "transient")
    assert failed.data["attempt"] == 1 and failed.data["hedged"] is False
    assert ok.outcome == "ok" and ok.error_class is None
    assert ok.data == ok.data | {"attempt": 2, "hedged": False, "model_version": "b-3"}
    assert ok.latency_s is not None and 0 <= ok.latency_s < 0.2
    [over] = [e for e in events if e.kind is EventKind.PROVIDER_FAILED_OVER]
    assert over.data == {"from": "primary", "to": "backup", "reason": "transient", "hedged": False}


async def test_the_turn_budget_shortens_the_first_byte_deadline():
    primary = FakeTTS("primary", profile=FaultProfile(hang_rate=1.0))
    config = RoutingConfig(ttfb_timeout_s=5.0, hedge=False, min_attempt_s=0.05)
    router = virtual_router(tts=[primary, FakeTTS("backup")], config=config)
    events: list[Event] = []
    turn_ends_s = router.clock.monotonic() + 0.15
    providers = router.bind("call-1", events.append, lambda: turn_ends_s)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await speak(providers.tts) == SENTENCE.split()
    assert loop.time() - started < 1.0
    assert attempts(events) == [("primary", "error"), ("backup", "ok")]
    assert events[0].error_class == "timeout"


async def test_llm_continues_a_partial_reply_on_the_next_provider():
    primary = FakeLLM(
        "a", "hello there friend", profile=FaultProfile(drop_rate=1.0, drop_after_chunks=2)
    )
    backup = FakeLLM("b", "friend")
    router = virtual_router(llm=[primary, backup], config=FAST)
    providers, _ = bind(router)
    question = [ChatMessage("user", "hi")]
    text = "".join([d.text async for d in providers.llm.chat(question)])
    assert text == "hello there" + "friend"
    assert backup.requests == [[*question, ChatMessage("assistant", "hello there")]]


async def test_stt_drop_after_a_partial_yields_the_final_once():
    primary = FakeSTT(
        "a", "book me tuesday", profile=FaultProfile(drop_rate=1.0, drop_after_chunks=1)
    )
    backup = FakeSTT("b", "book me tuesday")
    router = virtual_router(stt=[primary, backup], config=FAST)
    providers, events = bind(router)

    async def audio() -> AsyncIterator[bytes]:
        yield b"\x00\x00" * 320

    got = [
        (t.text, t.is_final) async for t in providers.stt.transcribe(audio(), sample_rate_hz=8000)
    ]
    assert got == [("book", False), ("book", False), ("book me tuesday", True)]
    assert backup.received_num_bytes == [640]
    assert attempts(events) == [("a", "error"), ("b", "ok")]


async def test_cancelling_while_waiting_for_the_first_byte_is_not_a_failure():
    hung = FakeTTS("hung", profile=FaultProfile(hang_rate=1.0))
    config = RoutingConfig(ttfb_timeout_s=5.0, hedge=False, breaker_failures=1)
    router = virtual_router(tts=[hung], config=config)
    providers, events = bind(router)
    task = asyncio.ensure_future(speak(providers.tts))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts(events) == [("hung", "cancelled")]
    assert router.breakers["hung"].allow(router.clock.monotonic())


async def test_probes_use_the_providers_own_probe_and_skip_closed_breakers():
    flaky = FakeTTS("flaky", profile=FaultProfile(error_rates={"503": 1.0}))
    config = RoutingConfig(
        ttfb_timeout_s=0.2, hedge=False, breaker_failures=1, breaker_cooldown_s=0.02
    )
    router = virtual_router(tts=[flaky, FakeTTS("backup")], config=config)
    providers, _ = bind(router)
    assert await router.run_probes() == {}
    await speak(providers.tts)
    await asyncio.sleep(0.03)
    flaky.profile = FaultProfile()
    assert await router.run_probes() == {"flaky": True}
    assert flaky.probes == 1 and flaky.requests == [SENTENCE]


def test_chain_config_selects_and_orders_providers_by_name():
    a, b = FakeTTS("a"), FakeTTS("b")
    router = virtual_router(tts=[a, b], config=RoutingConfig(providers=["b", "a"]))
    assert [p.name for p in router.chains[Stage.TTS]] == ["b", "a"]
    with pytest.raises(ConfigError, match="unknown provider 'c'"):
        virtual_router(tts=[a], config=RoutingConfig(providers=["c"]))
    with pytest.raises(ConfigError, match="unknown tts provider 'b'"):
        virtual_router(tts=[a], stage_configs={Stage.TTS: RoutingConfig(providers=["b"])})


async def test_events_take_their_times_from_the_injected_clock():
    clock = FakeClock(start_s=42.0, wall_offset_s=1_000.0)
    router = virtual_router([], [FakeTTS("t")], [], RoutingConfig(hedge=False), clock)
    providers, events = bind(router)
    await speak(providers.tts)
    [ok] = [e for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED]
    assert (ok.at_mono, ok.at_wall, ok.latency_s) == (42.0, 1_042.0, 0.0)


class FlakySTT:
    """Fails its first request with a transient 503, then hears ``transcript``."""

    def __init__(self, name: str, quality: float, transcript: str = "book me tuesday") -> None:
        from voicerail.providers.base import STTCapabilities

        self.name, self.model, self.quality = name, "m", quality
        self.capabilities = STTCapabilities(sample_rates_hz=(16000,))
        self.requests = 0
        self.transcript = transcript

    async def transcribe(self, audio, *, sample_rate_hz: int, language: str = "en"):
        from voicerail.providers.base import Transcript

        self.requests += 1
        async for _ in audio:
            pass
        if self.requests == 1:
            raise ProviderError("503", provider=self.name, status=503)
        yield Transcript(self.transcript, is_final=True)


async def utterance() -> AsyncIterator[bytes]:
    yield b"\x00\x00" * 1600


@pytest.mark.parametrize(("backup_quality", "retried"), [(0.4, True), (0.85, False)])
async def test_a_transient_error_is_retried_before_a_much_weaker_provider(backup_quality, retried):
    primary = FlakySTT("whisper", quality=0.9)
    backup = FlakySTT("sphinx", quality=backup_quality, transcript="book me to stay")
    backup.requests = 1  # the backup never fails
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=False, min_attempt_s=0.05)
    router = virtual_router(stt=[primary, backup], config=config)
    providers, events = bind(router)
    finals = [t.text async for t in providers.stt.transcribe(utterance(), sample_rate_hz=16000)]
    if retried:
        assert finals == ["book me tuesday"]
        assert attempts(events) == [("whisper", "error"), ("whisper", "ok")]
        [retry] = [e for e in events if e.kind is EventKind.PROVIDER_FAILED_OVER]
        assert retry.data["reason"] == "retry"
    else:
        assert finals == ["book me to stay"]
        assert attempts(events) == [("whisper", "error"), ("sphinx", "ok")]


async def test_a_much_weaker_fallback_takes_no_share_of_the_turn_budget():
    clock_start = asyncio.get_running_loop().time()
    slow = FakeSTT(
        "whisper",
        transcript="book me tuesday",
        profile=FaultProfile(first_byte_delay=Delay(value_s=0.3)),
    )
    slow.quality = 0.9  # type: ignore[attr-defined]
    weak = FakeSTT("sphinx", transcript="book me to stay")
    weak.quality = 0.4  # type: ignore[attr-defined]
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=False, min_attempt_s=0.05)
    router = virtual_router(stt=[slow, weak], config=config)
    # A 0.2 s turn budget: split over two providers whisper would get 0.1 s and be
    # abandoned at 0.3 s; before only a much weaker one it gets its whole 1 s.
    deadline = router.clock.monotonic() + 0.2
    events: list[Event] = []
    providers = router.bind("call-1", events.append, lambda: deadline)
    stream = providers.stt.transcribe(utterance(), sample_rate_hz=16000)
    finals = [t.text async for t in stream if t.is_final]
    assert finals == ["book me tuesday"]
    assert attempts(events) == [("whisper", "ok")]
    assert asyncio.get_running_loop().time() - clock_start < 1.0
