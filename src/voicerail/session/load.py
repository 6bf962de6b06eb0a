"""How loaded the server is, and whether it can take one more call.

Rules kept here:

1. A call is admitted only while there is room: fewer calls in progress (plus
   those the voice webhook already promised a slot) than the ceiling, and no
   load signal over its limit. An empty server always admits one call, so a
   machine that is slow for its own reasons still serves someone.
2. Signals are what the server already measures: event-loop lag, how late
   caller turn ends are seen (inbound lag), how long provider requests wait
   for a concurrency slot, and the process's CPU use. Each is smoothed over a
   window, so one slow decode does not close the doors, and a sustained
   overload does.
3. Once a signal is over its limit the server stays closed until it is back
   under ``reopen_ratio`` of that limit (hysteresis: no flapping at the edge).
4. A slot promised by the webhook is held for ``reservation_s`` at most; a
   caller whose stream never comes does not hold capacity forever.
5. Draining (shutdown) refuses every new call.
6. A resumed stream (a call already accepted, carried on by a new stream:
   ``state/resume.py``) is not a new call: it is counted like any call, so it
   fills the server for new ones, but neither the ceiling nor a load signal
   refuses it; only a drain does. Refusing it could only end the call, or
   bounce it between workers: the connect action cannot name a worker (they
   share one port), so Twilio's next stream lands where the kernel puts it.
   One more call over the ceiling costs little; a dropped call is a failure
   the caller hears. A draining worker of several has stopped listening, so
   the fresh stream reaches another one (``server/app.py``).

:func:`decide` is pure; :class:`LoadMonitor` feeds it from the running server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AdmissionConfig:
    """When the server stops taking calls.

    Attributes:
        max_calls: the ceiling of calls in progress (``--max-calls``).
        max_loop_lag_s: smoothed event-loop lag beyond which no call is admitted;
            the loop paces every call's audio, so lag here is heard as gaps.
        max_inbound_lag_s: smoothed lateness of caller turn ends (the server
            reading its inbound audio late).
        max_queue_wait_s: smoothed wait for a provider concurrency slot.
        max_cpu: smoothed process CPU, as a fraction of all cores.
        window_s: how far back the smoothing looks.
        reopen_ratio: a closed server reopens when every signal is under this
            share of its limit (rule 3).
        reservation_s: how long the webhook's promise of a slot is kept (rule 4).
        busy_cpu: smoothed CPU above which optional work (speculative STT) gives
            way; also when ``busy_calls_ratio`` of ``max_calls`` are in progress.
        busy_calls_ratio: see ``busy_cpu``.
    """

    max_calls: int = 10
    max_loop_lag_s: float = 0.15
    max_inbound_lag_s: float = 0.3
    max_queue_wait_s: float = 0.5
    max_cpu: float = 0.95
    window_s: float = 5.0
    reopen_ratio: float = 0.7
    reservation_s: float = 15.0
    busy_cpu: float = 0.6
    busy_calls_ratio: float = 0.5


@dataclass(frozen=True)
class LoadSignals:
    """Smoothed load signals (seconds, and CPU as a fraction of all cores)."""

    loop_lag_s: float = 0.0
    inbound_lag_s: float = 0.0
    queue_wait_s: float = 0.0
    cpu: float = 0.0


@dataclass(frozen=True)
class Load:
    """A snapshot of the server's load, as ``/readyz`` reports it."""

    calls_in_progress: int
    reserved: int
    max_calls: int
    signals: LoadSignals
    draining: bool = False
    overloaded_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        body = asdict(self)
        body["signals"] = {k: round(v, 4) for k, v in body["signals"].items()}
        return body


@dataclass(frozen=True)
class Decision:
    """An admission decision; ``reason`` says why a call was refused."""

    admit: bool
    reason: str | None = None


def over_limit(config: AdmissionConfig, signals: LoadSignals, ratio: float = 1.0) -> str | None:
    """The first signal over ``ratio`` × its limit, as ``"name value>limit"``, or None."""
    checks = (
        ("loop_lag_s", signals.loop_lag_s, config.max_loop_lag_s),
        ("inbound_lag_s", signals.inbound_lag_s, config.max_inbound_lag_s),
        ("queue_wait_s", signals.queue_wait_s, config.max_queue_wait_s),
        ("cpu", signals.cpu, config.max_cpu),
    )
    for name, value, limit in checks:
        if value > limit * ratio:
            return f"{name} {value:.3f}>{limit * ratio:.3f}"
    return None


def decide(config: AdmissionConfig, load: Load, *, resumed: bool = False) -> Decision:
    """Rules 1, 3, 5 and 6: may one more call start now (``resumed``: may an
    accepted call go on in a new stream)?"""
    if load.draining:
        return Decision(False, "draining")
    if resumed:
        return Decision(True)  # rule 6
    taken = load.calls_in_progress + load.reserved
    if taken >= config.max_calls:
        return Decision(False, f"full: {taken} of {config.max_calls} calls")
    if taken == 0:
        return Decision(True)
    if load.overloaded_by is not None:
        return Decision(False, f"overloaded: {load.overloaded_by}")
    return Decision(True)


class _Window:
    """Samples ``(at_s, value)`` kept for ``window_s``; their mean."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, at_s: float, value: float) -> None:
        self._samples.append((at_s, value))

    def mean(self, now_s: float) -> float:
        while self._samples and self._samples[0][0] < now_s - self.window_s:
            self._samples.popleft()
        if not self._samples:
            return 0.0
        return sum(v for _, v in self._samples) / len(self._samples)


@dataclass
class LoadMonitor:
    """The live load of one server process, fed by the calls and a sampling task.

    The call driver reports calls starting and ending and each turn's inbound
    lag; the router reports slot waits; :meth:`run` samples event-loop lag and
    CPU. The server asks :meth:`admit` before taking a call.

    Args:
        config: the admission limits.
        monotonic: the clock (seconds); injected for tests.
        cpu_time: process CPU seconds (user + system); injected for tests.
        num_cores: cores the process may use.
    """

    config: AdmissionConfig = field(default_factory=AdmissionConfig)
    monotonic: Callable[[], float] = time.monotonic
    cpu_time: Callable[[], float] = time.process_time
    num_cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    draining: bool = False

    def __post_init__(self) -> None:
        w = self.config.window_s
        self._loop_lag, self._inbound, self._queue, self._cpu = (_Window(w) for _ in range(4))
        self._calls: set[str] = set()
        self._reservations: dict[str, float] = {}
        self._closed_by: str | None = None
        self._cpu_mark = (self.monotonic(), self.cpu_time())
        self.refused = 0

    # -- fed by the calls -----------------------------------------------------

    def call_started(self, call_id: str, reservation: str | None = None) -> None:
        """A call's stream started (consuming the webhook's reservation, if any)."""
        if reservation is not None:
            self._reservations.pop(reservation, None)
        self._calls.add(call_id)

    def call_ended(self, call_id: str) -> None:
        self._calls.discard(call_id)

    def observe_inbound_lag(self, lag_s: float) -> None:
        self._inbound.add(self.monotonic(), max(0.0, lag_s))

    def observe_queue_wait(self, wait_s: float) -> None:
        self._queue.add(self.monotonic(), max(0.0, wait_s))

    def observe_loop_lag(self, lag_s: float) -> None:
        self._loop_lag.add(self.monotonic(), max(0.0, lag_s))

    def observe_cpu(self, fraction: float) -> None:
        self._cpu.add(self.monotonic(), max(0.0, fraction))

    # -- read by the server ---------------------------------------------------

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    def snapshot(self) -> Load:
        """The current load (expired reservations dropped, rule 3 applied)."""
        now = self.monotonic()
        for key, until in list(self._reservations.items()):
            if until <= now:
                del self._reservations[key]
        signals = LoadSignals(
            loop_lag_s=self._loop_lag.mean(now),
            inbound_lag_s=self._inbound.mean(now),
            queue_wait_s=self._queue.mean(now),
            cpu=self._cpu.mean(now),
        )
        if self._closed_by is None:
            self._closed_by = over_limit(self.config, signals)
        elif over_limit(self.config, signals, self.config.reopen_ratio) is None:
            self._closed_by = None
        return Load(
            calls_in_progress=len(self._calls),
            reserved=len(self._reservations),
            max_calls=self.config.max_calls,
            signals=signals,
            draining=self.draining,
            overloaded_by=self._closed_by,
        )

    def admit(self, reservation: str | None = None, *, resumed: bool = False) -> Decision:
        """Decide on one more call; when admitted with ``reservation`` (the webhook's
        CallSid), a slot is held for its stream (rule 4). ``resumed``: the stream
        carries on an accepted call (rule 6); it holds no reservation."""
        if reservation is not None and reservation in self._reservations:
            return Decision(True)  # the webhook already promised this call a slot
        decision = decide(self.config, self.snapshot(), resumed=resumed)
        if not decision.admit:
            self.refused += 1
        elif reservation is not None and not resumed:
            self._reservations[reservation] = self.monotonic() + self.config.reservation_s
        return decision

    def busy(self) -> bool:
        """Whether optional work (work that only saves time when cores are idle,
        such as speculative STT) should give way now."""
        config = self.config
        if len(self._calls) >= config.busy_calls_ratio * config.max_calls:
            return True
        return self._cpu.mean(self.monotonic()) > config.busy_cpu

    def ready(self) -> tuple[bool, Load]:
        """Readiness for a load balancer: whether a new call would be admitted now."""
        load = self.snapshot()
        return decide(self.config, load).admit, load

    async def run(self, interval_s: float = 0.1) -> None:
        """Sample event-loop lag and CPU every ``interval_s`` until cancelled."""
        self._cpu_mark = (self.monotonic(), self.cpu_time())
        while True:
            slept_from_s = self.monotonic()
            await asyncio.sleep(interval_s)
            self.sample(slept_from_s, interval_s)

    def sample(self, slept_from_s: float, interval_s: float) -> None:
        """One sampler wake-up: the loop lag is how late it woke (``interval_s``
        asked from ``slept_from_s``); CPU is averaged over at least a second."""
        now = self.monotonic()
        self.observe_loop_lag(now - slept_from_s - interval_s)
        last_s, last_cpu_s = self._cpu_mark
        if now - last_s >= 1.0:
            cpu_s = self.cpu_time()
            self.observe_cpu((cpu_s - last_cpu_s) / (now - last_s) / self.num_cores)
            self._cpu_mark = (now, cpu_s)
