"""Abandoning a slow attempt never swallows the cancellation of the task doing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicerail.routing.attempts import Attempt, abandon


async def never() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()
    yield b""


async def test_a_call_cancelled_while_abandoning_a_stubborn_attempt_stays_cancelled():
    release = asyncio.Event()

    async def stubborn() -> bytes:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # a provider slow to honour its cancellation
            raise
        return b""

    attempt: Attempt[bytes] = Attempt(never(), never(), 0.0, 1, False, 1.0)
    attempt.task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    after = []

    async def reply_job() -> None:
        await abandon(attempt)
        after.append("went on")  # the bug: the job carried on as if not cancelled

    job = asyncio.ensure_future(reply_job())
    await asyncio.sleep(0)
    job.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert after == []


async def test_an_attempts_own_error_is_not_raised_by_abandon():
    async def failing() -> bytes:
        raise ValueError("provider broke")

    attempt: Attempt[bytes] = Attempt(never(), never(), 0.0, 1, False, 1.0)
    attempt.task = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    await abandon(attempt)  # no error
    await attempt.stream.aclose()  # type: ignore[attr-defined]
