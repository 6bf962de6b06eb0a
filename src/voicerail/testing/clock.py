"""A controllable clock for tests of policies and drivers."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when told to.

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
