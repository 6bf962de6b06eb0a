"""Controllable clocks for tests of policies, drivers and the router.

* :class:`FakeClock`: time moves only when the test calls :meth:`FakeClock.advance`;
  its waits are the event loop's real ones (for tests that step the readings by
  hand while a driver ticks in real time).
* :class:`AutoClock` on a :class:`VirtualTimeLoop`: the event loop's own clock is
  virtual and jumps to the next timer whenever every task waits, as trio's
  ``MockClock(autojump_threshold=0)`` does. Every ``asyncio.sleep``,
  ``asyncio.wait_for``, ``call_later`` and :class:`AutoClock` wait then takes no
  real time, and the readings (``monotonic``) are the loop's time, so deadlines
  and measured durations agree. Run a test with :func:`run_virtual`.

Limits of the virtual loop: time jumps whenever no callback is ready and no
socket or pipe is readable at that instant, so work done in threads
(``asyncio.to_thread``) or on real sockets may see time jump past it; use it with
in-process fakes (fake transport, fake providers), not with servers.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FakeClock:
    """A clock whose readings move only when told to.

    Args:
        start_s: initial monotonic time in seconds.
        wall_offset_s: wall time minus monotonic time, in seconds.
    """

    def __init__(self, start_s: float = 0.0, wall_offset_s: float = 1_700_000_000.0) -> None:
        self._now_s = start_s
        self._wall_offset_s = wall_offset_s

    def monotonic(self) -> float:
        return self._now_s

    def wall(self) -> float:
        return self._now_s + self._wall_offset_s

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must be >= 0).

        Raises:
            ValueError: if ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards by {seconds} s")
        self._now_s += seconds

    async def sleep(self, seconds: float) -> None:
        """A real wait of ``seconds`` (the readings do not move)."""
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        """A real deadline of ``timeout_s`` (the readings do not move)."""
        return await asyncio.wait_for(aw, timeout_s)


class _JumpingSelector:
    """A selector that, instead of blocking until the next timer, moves the loop's
    virtual time to it; it blocks for real only when no timer is pending."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return self._inner.select(None)  # no timer: wait for I/O or a thread
        self._loop.jump(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose :meth:`time` is virtual and jumps to the next timer when
    every task waits (module docstring: limits)."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now_s = 0.0
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type,arg-type]

    def time(self) -> float:
        return self._virtual_now_s

    def jump(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``."""
        self._virtual_now_s += max(0.0, seconds)


class AutoClock:
    """A :class:`~voicerail.clock.Clock` reading the running :class:`VirtualTimeLoop`.

    Args:
        wall_offset_s: wall time minus monotonic time, in seconds.
    """

    def __init__(self, wall_offset_s: float = 1_700_000_000.0) -> None:
        self._wall_offset_s = wall_offset_s

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return self.monotonic() + self._wall_offset_s

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        return await asyncio.wait_for(aw, timeout_s)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new :class:`VirtualTimeLoop`.

    Raises:
        Whatever ``main`` raises.
    """
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
