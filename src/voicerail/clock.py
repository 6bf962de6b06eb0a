"""Clocks: one object to read time and to wait on it.

Policies take ``now_s`` as an argument; drivers and the router own a
:class:`Clock` and both read it (``monotonic``, ``wall``) and wait on it
(``sleep``, ``wait_for``), so a test that swaps the clock controls every deadline
of the code under test (``voicerail.testing.clock``: a clock that advances itself
whenever every task waits, after trio's ``MockClock(autojump_threshold=0)``).

Times are float seconds on a monotonic clock unless a name says ``wall``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """A source of monotonic and wall time, in float seconds, and of waits on it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock (at once when ``seconds <= 0``).

        Raises:
            asyncio.CancelledError: the waiting task was cancelled.
        """
        ...

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        """``aw``'s result, or :class:`TimeoutError` once ``timeout_s`` of this clock
        passed (``aw`` is then cancelled). None waits without a deadline.

        Raises:
            TimeoutError: the deadline passed first.
        """
        ...


def deadline(clock: Clock, timeout_s: float) -> float:
    """The monotonic time ``timeout_s`` from now on ``clock``."""
    return clock.monotonic() + timeout_s


def remaining(clock: Clock, deadline_s: float) -> float:
    """Seconds left until ``deadline_s`` on ``clock`` (0 once it passed)."""
    return max(0.0, deadline_s - clock.monotonic())


class SystemClock:
    """The process clocks: :func:`time.monotonic` and :func:`time.time`; waits on the
    event loop (whose clock is :func:`time.monotonic`)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        return await asyncio.wait_for(aw, timeout_s)
