"""Watching a load run: the server's CPU and memory, the simulator's own health.

The simulator's figures are only as good as its clock: :class:`LoopLagMonitor`
measures how late this process's event loop wakes up, and the callers record
how late each 20 ms frame went out (``CallResult.send_lag_ms``). Both go into
the report so a run on an overloaded machine shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicerail.sim.stats import Histogram, percentile


@dataclass(frozen=True)
class Sample:
    """One reading (``at_s`` is seconds since the monitor started)."""

    at_s: float
    cpu_percent: float
    rss_bytes: int
    active_calls: int


@dataclass
class ProcessMonitor:
    """Samples one process's CPU and resident memory while calls run, with its
    children's: a server run with workers (``--workers N``) is its supervisor
    and the workers, and all of them count.

    Args:
        pid: the process to watch (and its descendants).
        active_calls: returns how many calls are in progress right now.
        interval_s: sampling period.
    """

    pid: int
    active_calls: Callable[[], int]
    interval_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    baseline_rss_bytes: int = 0
    cpu_seconds: float = 0.0
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the baseline and start sampling.

        Raises:
            psutil.NoSuchProcess: ``pid`` does not exist.
        """
        import psutil

        self._proc = psutil.Process(self.pid)
        self._cpu_start, self.baseline_rss_bytes = self._read_tree()
        self._t0 = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _read_tree(self) -> tuple[float, int]:
        """(CPU seconds, resident bytes) of the process and its live descendants.

        Raises:
            psutil.NoSuchProcess: the watched process itself is gone.
        """
        import psutil

        cpu_s = 0.0
        rss = 0
        for proc in [self._proc, *self._proc.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                cpu_s += times.user + times.system
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                if proc is self._proc:
                    raise
        return cpu_s, rss

    async def _run(self) -> None:
        import psutil

        last_cpu_s, last_at = self._cpu_start, time.monotonic()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                cpu_s, rss = self._read_tree()
            except psutil.Error:
                return
            now = time.monotonic()
            # A worker that exits between samples takes its CPU seconds with it.
            cpu = max(0.0, cpu_s - last_cpu_s) / max(now - last_at, 1e-6) * 100
            last_cpu_s, last_at = cpu_s, now
            self.samples.append(Sample(now - self._t0, cpu, rss, self.active_calls()))

    async def stop(self) -> None:
        """Stop sampling and total the CPU time used since :meth:`start`."""
        import psutil

        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(psutil.Error):
            self.cpu_seconds = self._read_tree()[0] - self._cpu_start

    def summary(self) -> dict[str, Any]:
        """CPU and memory overall and per concurrent call (JSON-ready).

        ``cpu_percent_per_call`` is the mean CPU (% of one core) over samples with
        calls in progress, divided by the mean number of calls in progress then;
        ``rss_per_call_bytes`` is the peak growth over the baseline divided by the
        peak number of calls.
        """
        busy = [s for s in self.samples if s.active_calls > 0]
        peak_calls = max((s.active_calls for s in self.samples), default=0)
        peak_rss = max((s.rss_bytes for s in self.samples), default=self.baseline_rss_bytes)
        result: dict[str, Any] = {
            "pid": self.pid,
            "samples": len(self.samples),
            "cpu_seconds": self.cpu_seconds,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "peak_rss_bytes": peak_rss,
            "peak_active_calls": peak_calls,
            "cpu_percent_mean": None,
            "cpu_percent_per_call": None,
            "rss_per_call_bytes": None,
        }
        if busy:
            cpu_mean = sum(s.cpu_percent for s in busy) / len(busy)
            calls_mean = sum(s.active_calls for s in busy) / len(busy)
            result["cpu_percent_mean"] = cpu_mean
            result["cpu_percent_per_call"] = cpu_mean / calls_mean
        if peak_calls:
            result["rss_per_call_bytes"] = max(0, peak_rss - self.baseline_rss_bytes) / peak_calls
        return result

    def series(self) -> list[dict[str, float]]:
        """The samples as dicts, for plots and report.json."""
        return [
            {
                "at_s": s.at_s,
                "cpu_percent": s.cpu_percent,
                "rss_mb": s.rss_bytes / 2**20,
                "active_calls": s.active_calls,
            }
            for s in self.samples
        ]


class LoopLagMonitor:
    """How late this event loop wakes up from a 10 ms sleep, in milliseconds."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lag_ms = Histogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring (needs a running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.lag_ms.add((time.monotonic() - started - self.interval_s) * 1000)

    async def stop(self) -> None:
        """Stop measuring."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def simulator_cpu_seconds() -> float:
    """CPU seconds used by this process so far (user + system)."""
    times = os.times()
    return times.user + times.system


def lag_summary(per_call: list[list[float]]) -> dict[str, Any]:
    """Send-lag percentiles over every frame of every call, milliseconds."""
    hist = Histogram()
    for lags in per_call:
        hist.extend(lags)
    summary = hist.summary()
    worst = [max(lags) for lags in per_call if lags]
    summary["per_call_max_p50"] = percentile(worst, 50)
    return summary
