"""Latency a provider fault adds to a turn: voicerail's router vs. sequential retry.

A turn is STT (final transcript) → LLM (whole reply) → TTS (the first sentence,
fully delivered), on fault-injecting fake providers with cloud-like latency
(lognormal first byte: STT 200 ms, LLM 300 ms, TTS 150 ms; two providers per
stage). One fault at a time hits the primary of one stage:

* ``503 burst`` — the primary TTS answers 503 to every request;
* ``hang`` — the primary TTS never answers;
* ``slow first byte`` — the primary TTS's first byte takes 2 s;
* ``mid-stream drop`` — the primary TTS drops the connection after 3 words;
* ``llm hang`` — the primary LLM never answers.

Both systems see the same providers in the same run:

* voicerail: ``Router`` with deadlines, hedging and breakers (defaults);
* baseline: sequential retry configured like LiveKit's defaults as described in
  the issue — attempt timeout 5 s for the LLM and 10 s for speech, two retries per
  provider before the next one, no pause between retries (which favours the
  baseline), and a dropped stream restarted from the sentence's first word.

Reported per fault: the latency added over the no-fault case (p50/p95), and the
words repeated to the caller. Usage: ``.venv/bin/python bench/failover.py [--turns 40]``;
``--embedded`` measures the real models at the ear instead (``failover_embedded.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from voicerail.events.model import Event
from voicerail.routing.faults import Delay, FakeLLM, FakeSTT, FakeTTS, FaultProfile
from voicerail.routing.router import Router

ARRIVAL_S = 0.1  # turns start 100 ms apart, as concurrent calls' turns do
SENTENCE = "Your appointment is booked for Tuesday at three in the afternoon."


def lognormal(median_s: float) -> Delay:
    return Delay(kind="lognormal", median_s=median_s, sigma=0.3)


def providers(fault: str, seed: int) -> dict[str, list[Any]]:
    """Fresh providers for one system; ``fault`` applies to a primary."""

    def profile(median_s: float, **extra: Any) -> FaultProfile:
        return FaultProfile(first_byte_delay=lognormal(median_s), seed=seed, **extra)

    tts_fault: dict[str, Any] = {
        "503 burst": {"error_rates": {"503": 1.0}},
        "hang": {"hang_rate": 1.0},
        "slow first byte": {"first_byte_delay": Delay(value_s=2.0)},
        "mid-stream drop": {"drop_rate": 1.0, "drop_after_chunks": 3},
    }.get(fault, {})
    llm_fault = {"hang_rate": 1.0} if fault == "llm hang" else {}
    tts_primary = {"first_byte_delay": lognormal(0.15), **tts_fault}
    return {
        "stt": [
            FakeSTT("stt-a", transcript="book me tuesday", profile=profile(0.2)),
            FakeSTT("stt-b", transcript="book me tuesday", profile=profile(0.25)),
        ],
        "llm": [
            FakeLLM(
                "llm-a",
                reply=SENTENCE,
                profile=FaultProfile(
                    **{"first_byte_delay": lognormal(0.3), "seed": seed, **llm_fault}
                ),
            ),
            FakeLLM("llm-b", reply=SENTENCE, profile=profile(0.35)),
        ],
        "tts": [
            FakeTTS("tts-a", profile=FaultProfile(seed=seed, **tts_primary), seconds_per_word=0),
            FakeTTS("tts-b", profile=profile(0.18), seconds_per_word=0),
        ],
    }


async def _audio() -> AsyncIterator[bytes]:
    yield b"\x00\x00" * 3200


async def voicerail_turn(chains: dict[str, list[Any]], router: Router) -> tuple[float, int]:
    events: list[Event] = []
    routed = router.bind("bench", events.append, lambda: None)
    assert routed.stt and routed.llm and routed.tts
    started = time.perf_counter()
    _ = [t async for t in routed.stt.transcribe(_audio(), sample_rate_hz=16000)]
    reply = "".join([d.text async for d in routed.llm.chat([])])
    words = [c.text async for c in routed.tts.synthesize(reply)]
    return time.perf_counter() - started, len(words) - len(reply.split())


async def _with_retries(
    chain: list[Any], timeout_s: float, attempt: Callable[[Any], Any], retries: int = 2
) -> Any:
    last: BaseException | None = None
    for provider in chain:
        for _ in range(1 + retries):
            try:
                return await asyncio.wait_for(attempt(provider), timeout_s)
            except Exception as exc:  # the baseline retries on anything
                last = exc
    raise RuntimeError(f"baseline: every provider failed: {last}")


async def baseline_turn(chains: dict[str, list[Any]]) -> tuple[float, int]:
    started = time.perf_counter()

    async def stt(p: Any) -> list[Any]:
        return [t async for t in p.transcribe(_audio(), sample_rate_hz=16000)]

    async def llm(p: Any) -> str:
        return "".join([d.text async for d in p.chat([])])

    await _with_retries(chains["stt"], 10.0, stt)
    reply = await _with_retries(chains["llm"], 5.0, llm)
    heard: list[str] = []

    async def tts(p: Any) -> None:
        async for chunk in p.synthesize(reply):  # restarts from the first word
            heard.append(chunk.text)

    await _with_retries(chains["tts"], 10.0, tts)
    return time.perf_counter() - started, len(heard) - len(reply.split())


async def _after(delay_s: float, turn: Any) -> Any:
    await asyncio.sleep(delay_s)
    return await turn


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(fault: str, turns: int) -> dict[str, tuple[list[float], int]]:
    results: dict[str, tuple[list[float], int]] = {}
    chains = providers(fault, seed=1)
    router = Router(stt=chains["stt"], llm=chains["llm"], tts=chains["tts"])
    runs = await asyncio.gather(
        *(_after(i * ARRIVAL_S, voicerail_turn(chains, router)) for i in range(turns))
    )
    results["voicerail"] = ([r[0] for r in runs], sum(r[1] for r in runs))
    chains = providers(fault, seed=1)
    runs = await asyncio.gather(
        *(_after(i * ARRIVAL_S, baseline_turn(chains)) for i in range(turns))
    )
    results["baseline"] = ([r[0] for r in runs], sum(r[1] for r in runs))
    return results


async def main(turns: int) -> None:
    base = await measure("none", turns)
    print(
        f"latency added to a turn by a fault ({turns} turns per case, one every "
        f"{ARRIVAL_S * 1000:.0f} ms, overlapping), ms"
    )
    print(f"{'fault':<18}{'system':<11}{'p50':>9}{'p95':>9}{'repeated words':>16}")
    for fault in ["503 burst", "hang", "slow first byte", "mid-stream drop", "llm hang"]:
        results = await measure(fault, turns)
        for system in ("voicerail", "baseline"):
            latencies, repeated = results[system]
            ref = base[system][0]
            p50 = (pct(latencies, 50) - pct(ref, 50)) * 1000
            p95 = (pct(latencies, 95) - pct(ref, 95)) * 1000
            print(f"{fault:<18}{system:<11}{p50:>9.0f}{p95:>9.0f}{repeated:>16}")
    for system in ("voicerail", "baseline"):
        ref = base[system][0]
        print(
            f"no-fault turn, {system}: p50 {pct(ref, 50) * 1000:.0f} ms, "
            f"p95 {pct(ref, 95) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    import sys

    if "--embedded" in sys.argv:  # the real models, measured at the ear
        sys.path.insert(0, str(Path(__file__).parent))
        from failover_embedded import main as embedded_main

        embedded_main([a for a in sys.argv[1:] if a != "--embedded"])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    asyncio.run(main(parser.parse_args().turns))
