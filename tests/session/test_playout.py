"""Playout: pacing at most the lead ahead, grouping, marks after their audio, and a cut
that drops the old generation and clears the provider. On virtual time."""

from __future__ import annotations

import asyncio

from voicerail.session.playout import Playout
from voicerail.testing.clock import AutoClock, run_virtual
from voicerail.testing.transport import FakeTransport
from voicerail.wire.transport import CallAnswered

FRAME = b"\xff" * 160


async def answered() -> FakeTransport:
    transport = FakeTransport(echo_marks=False)
    transport.push(CallAnswered("CA1", "MZ1"))
    async for _ in transport.frames():
        transport.receive_data(b"")
        break
    return transport


async def nothing(frame: str | bytes) -> None:
    pass


def test_audio_is_paced_to_the_lead_and_marks_follow_their_audio():
    async def main() -> tuple[list[float], list[tuple[str, bytes | str]]]:
        clock = AutoClock()
        transport = await answered()
        playout = Playout(transport, nothing, clock, lead_s=0.1, frames_per_message=1)
        sent_at: list[float] = []
        task = asyncio.get_running_loop().create_task(playout.run())
        playout.queue_audio(0, FRAME * 50)  # one second
        playout.queue_mark(0, "m1")
        while len(transport.sent) < 51:
            before = len(transport.sent)
            await clock.sleep(0.001)
            sent_at += [clock.monotonic()] * (len(transport.sent) - before)
        task.cancel()
        return sent_at, transport.sent

    sent_at, sent = run_virtual(main())
    assert [kind for kind, _ in sent] == ["audio"] * 50 + ["mark"]
    # the first 0.1 s go at once; the last frame 0.1 s before it plays at 1.0 s
    assert sent_at[5] < 0.01 and 0.85 < sent_at[49] < 0.91


def test_queued_frames_are_grouped_and_a_cut_drops_the_rest_and_clears():
    async def main() -> list[tuple[str, bytes | str]]:
        clock = AutoClock()
        transport = await answered()
        playout = Playout(transport, nothing, clock, lead_s=0.2, frames_per_message=5)
        playout.queue_audio(0, FRAME * 100)
        task = asyncio.get_running_loop().create_task(playout.run())
        await clock.sleep(0.5)
        await playout.cut()
        playout.queue_audio(0, FRAME)  # queued under the old generation: dropped
        playout.queue_mark(playout.generation, "after")
        await clock.sleep(0.5)
        task.cancel()
        return transport.sent

    sent = run_virtual(main())
    kinds = [kind for kind, _ in sent]
    assert kinds[-2:] == ["clear", "mark"] and kinds.count("clear") == 1
    audio = [payload for kind, payload in sent if kind == "audio"]
    assert all(len(payload) == 5 * 160 for payload in audio)
    # no more went out than the time played, the lead and one group of 0.1 s
    assert 0.5 <= len(audio) * 0.1 <= 0.5 + 0.2 + 0.1 + 1e-9
