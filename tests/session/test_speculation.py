"""Speculative STT: started at a pause, reused only for the same utterance."""

import asyncio

from voicerail.session.speculation import SpeculativeSTT


async def test_pause_that_ends_the_turn_reuses_the_running_transcription():
    calls = []

    async def transcribe(start_s, end_s):
        calls.append((start_s, end_s))
        return f"{start_s}-{end_s}"

    spec = SpeculativeSTT(transcribe, after_s=0.1)
    spec.observe(0.0, None, 1.0)  # speaking, no pause
    spec.observe(0.0, 1.0, 1.05)  # pause too short
    assert spec.started == 0
    spec.observe(0.0, 1.0, 1.1)
    spec.observe(0.0, 1.0, 1.2)  # same pause: no second request
    assert spec.started == 1
    task = spec.take(0.0, 1.0)
    assert task is not None and await task == "0.0-1.0"
    assert calls == [(0.0, 1.0)] and spec.used == 1


async def test_resumed_speech_drops_the_speculation_and_a_later_pause_restarts_it():
    started = asyncio.Event()

    async def slow(start_s, end_s):
        started.set()
        await asyncio.sleep(10)
        return "never"

    spec = SpeculativeSTT(slow, after_s=0.1)
    spec.observe(0.0, 1.0, 1.2)
    await started.wait()
    first = spec._pending.task
    spec.observe(0.0, None, 1.3)  # the caller spoke again
    await asyncio.sleep(0)
    assert first.cancelled()
    spec.observe(0.0, 2.0, 2.2)
    assert spec.take(0.0, 1.0) is None  # a different utterance end: not reused
    assert spec.started == 2 and spec.used == 0


async def test_the_end_of_the_utterance_keeps_the_speculation_for_the_turn():
    async def transcribe(start_s, end_s):
        return "done"

    spec = SpeculativeSTT(transcribe, after_s=0.1)
    spec.observe(0.0, 1.0, 1.2)
    spec.observe(None, None, 1.5)  # the endpointer just ended the utterance
    task = spec.take(0.0, 1.0)
    assert task is not None and await task == "done"


async def test_a_busy_server_skips_speculation_once_per_pause_and_the_turn_transcribes_after():
    calls = []
    busy = {"now": True}
    asked = []

    async def transcribe(start_s, end_s):
        calls.append((start_s, end_s))
        return "text"

    def allowed() -> bool:
        asked.append(1)
        return not busy["now"]

    spec = SpeculativeSTT(transcribe, after_s=0.1, allowed=allowed)
    spec.observe(0.0, 1.0, 1.2)
    spec.observe(0.0, 1.0, 1.3)  # same pause: not asked again
    assert (spec.started, spec.skipped, len(asked)) == (0, 1, 1)
    assert spec.take(0.0, 1.0) is None  # the driver transcribes after the window
    busy["now"] = False
    spec.observe(0.0, 2.0, 2.2)  # a new pause on an idle server speculates
    assert spec.started == 1
    task = spec.take(0.0, 2.0)
    assert task is not None and await task == "text"
    assert calls == [(0.0, 2.0)]
