"""The router against fault-injecting fake providers, with small real delays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicerail.errors import ProviderError, ProviderUnavailable
from voicerail.events.model import Event, EventKind
from voicerail.routing.router import Router, RoutingConfig
from voicerail.testing.faults import Delay, FakeLLM, FakeSTT, FakeTTS, FaultProfile

SENTENCE = "your appointment is on Tuesday at three in the afternoon"
FAST = RoutingConfig(ttfb_timeout_s=0.2, idle_timeout_s=0.2, hedge=False, min_attempt_s=0.05)


def bind(router: Router) -> tuple:
    events: list[Event] = []
    return router.bind("call-1", events.append), events


async def speak(tts, text: str = SENTENCE) -> list[str]:
    return [chunk.text async for chunk in tts.synthesize(text)]


def attempts(events: list[Event]) -> list[tuple[str | None, str | None]]:
    return [(e.provider, e.outcome) for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED]


async def test_503_fails_over_to_the_next_tts():
    primary = FakeTTS("primary", profile=FaultProfile(error_rates={"503": 1.0}))
    router = Router(tts=[primary, FakeTTS("backup")], config=FAST)
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("primary", "error"), ("backup", "ok")]
    [failover] = [e for e in events if e.kind is EventKind.PROVIDER_FAILED_OVER]
    assert failover.provider == "backup" and failover.data["from"] == "primary"
    error = next(e for e in events if e.outcome == "error")
    assert error.error_class == "transient" and error.data["attempt"] == 1


async def test_hung_tts_is_abandoned_at_the_first_byte_deadline():
    primary = FakeTTS("primary", profile=FaultProfile(hang_rate=1.0))
    router = Router(tts=[primary, FakeTTS("backup")], config=FAST)
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
    router = Router(tts=[primary, backup], config=FAST)
    providers, _ = bind(router)
    heard = await speak(providers.tts)
    assert heard == SENTENCE.split()
    assert backup.requests == [" ".join(SENTENCE.split()[4:])]


async def test_mid_sentence_hang_is_caught_by_the_idle_deadline():
    primary = FakeTTS("primary", profile=FaultProfile(hang_after_chunks=2))
    router = Router(tts=[primary, FakeTTS("backup")], config=FAST)
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("primary", "error"), ("backup", "ok")]


async def test_stt_failover_replays_the_buffered_utterance():
    primary = FakeSTT("primary", profile=FaultProfile(error_rates={"500": 1.0}))
    backup = FakeSTT("backup", transcript="book me tuesday")
    router = Router(stt=[primary, backup], config=FAST)
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
    router = Router(tts=[FakeTTS("a", profile=profile), FakeTTS("b", profile=profile)], config=FAST)
    providers, events = bind(router)
    with pytest.raises(ProviderUnavailable) as caught:
        await speak(providers.tts)
    assert caught.value.error_class.value == "permanent"
    assert [e.error_class for e in events if e.outcome == "error"] == ["permanent"] * 2


async def test_hedge_starts_the_backup_when_the_primary_is_slow_and_takes_the_faster():
    slow = FakeTTS("slow", profile=FaultProfile(first_byte_delay=Delay(value_s=0.5)))
    config = RoutingConfig(ttfb_timeout_s=2.0, idle_timeout_s=1.0, hedge=True)
    router = Router(tts=[slow, FakeTTS("fast")], config=config)
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
    router = Router(tts=[slow], config=FAST)
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
    router = Router(tts=[flaky, FakeTTS("backup")], config=config)
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
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=True, retry_ratio=0.0, min_retries=1)
    slow = FaultProfile(first_byte_delay=Delay(value_s=0.15))
    router = Router(tts=[FakeTTS("a", profile=slow), FakeTTS("b")], config=config)
    router.latency["a"].default_s = 0.02
    providers, events = bind(router)
    await speak(providers.tts)  # the one hedge the budget allows
    await speak(providers.tts)  # budget spent: waits for the slow primary
    assert [e.data["hedged"] for e in events if e.outcome == "ok"] == [True, False]
    broken = FaultProfile(error_rates={"503": 1.0})
    router = Router(tts=[FakeTTS("c", profile=broken), FakeTTS("d")], config=config)
    providers, _ = bind(router)
    for _ in range(3):  # failover after errors is never refused
        assert await speak(providers.tts) == SENTENCE.split()


async def test_llm_restarts_on_the_next_provider_and_reports_version_changes():
    llm_a = FakeLLM("a", reply="hello there", profile=FaultProfile(error_rates={"429": 1.0}))
    llm_b = FakeLLM("b", reply="hi", profile=FaultProfile(model_version="b-1"))
    router = Router(llm=[llm_a, llm_b], config=FAST)
    providers, events = bind(router)
    text = "".join([d.text async for d in providers.llm.chat([])])
    assert text == "hi"
    llm_b._faults.profile = FaultProfile(model_version="b-2")
    _ = [d async for d in providers.llm.chat([])]
    changed = [e for e in events if e.kind is EventKind.PROVIDER_VERSION_CHANGED]
    assert [(e.data["previous"], e.data["current"]) for e in changed] == [("b-1", "b-2")]


async def test_a_hung_primary_overtaken_by_hedges_trips_its_breaker():
    hung = FakeTTS("hung", profile=FaultProfile(hang_rate=1.0))
    config = RoutingConfig(ttfb_timeout_s=2.0, hedge=True, breaker_failures=2)
    router = Router(tts=[hung, FakeTTS("backup")], config=config)
    router.latency["hung"].default_s = 0.02
    providers, events = bind(router)
    for _ in range(3):
        assert await speak(providers.tts) == SENTENCE.split()
    assert len(hung.requests) == 2  # the open breaker spared the third sentence
    lost = [e for e in events if e.outcome == "hedge_lost"]
    assert [e.error_class for e in lost] == ["timeout", "timeout"]


async def test_a_refused_hedge_leaves_the_backup_for_failover():
    config = RoutingConfig(ttfb_timeout_s=0.1, hedge=True, retry_ratio=0.0, min_retries=0)
    router = Router(
        tts=[FakeTTS("hung", profile=FaultProfile(hang_rate=1.0)), FakeTTS("backup")],
        config=config,
    )
    router.latency["hung"].default_s = 0.02
    providers, events = bind(router)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("hung", "error"), ("backup", "ok")]


async def test_concurrency_limit_queues_then_fails_over_at_the_queue_deadline():
    slow = FakeTTS("limited", profile=FaultProfile(chunk_delay=Delay(value_s=0.05)))
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=False, max_concurrency=1, queue_timeout_s=0.05)
    router = Router(tts=[slow, FakeTTS("overflow")], config=config)
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


async def test_attempt_events_carry_usage_and_cost_from_the_price_table():
    from voicerail.routing.router import Price

    router = Router(
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


async def test_a_timeout_squeezed_by_the_turn_budget_does_not_blame_the_provider():
    slowish = FakeTTS("slowish", profile=FaultProfile(first_byte_delay=Delay(value_s=0.2)))
    config = RoutingConfig(ttfb_timeout_s=1.0, hedge=False, min_attempt_s=0.05, breaker_failures=1)
    router = Router(tts=[slowish, FakeTTS("fast")], config=config)
    events: list[Event] = []
    deadline = router.clock.monotonic() + 0.05  # almost nothing left of the turn
    providers = router.bind("call-1", events.append, lambda: deadline)
    assert await speak(providers.tts) == SENTENCE.split()
    assert attempts(events) == [("slowish", "error"), ("fast", "ok")]
    assert router.breakers["slowish"].state(router.clock.monotonic()).value == "closed"
