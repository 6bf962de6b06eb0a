"""``SIGTERM`` drains the server instead of cutting its calls.

Rules:

1. On the first ``SIGTERM`` the server drains: the load monitor's ``draining``
   flag turns ``/readyz`` to 503 and refuses every new call cleanly (the voice
   webhook answers the overflow TwiML, a stream is closed with 1013); calls in
   progress go on.
2. When the last call ends, or the drain deadline passes, the server stops and
   the process exits 0. A call still running at the deadline is ended by the
   worker (:meth:`CallSession.shut_down`): ``failed``, ``ended_by: shutdown``,
   closed with 1012; never ``abandoned``, which would say the caller hung up.
3. A second ``SIGTERM`` during a drain, or ``SIGINT``, stops at once (uvicorn's
   own handling).
4. A worker sharing its listening socket with others (``--workers N``) stops
   accepting when it drains: it closes its copy of the socket, and new calls
   queue for the workers still accepting (the queue belongs to the socket, not
   to a worker). A server alone keeps accepting, to refuse new calls cleanly.

Without this uvicorn closes every WebSocket with 1012 a fraction of a second
after ``SIGTERM`` and the driver stores those calls as abandoned by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import uvicorn

from voicerail.session.load import LoadMonitor

log = logging.getLogger(__name__)


class DrainableCall(Protocol):
    """What a drain needs of a call (:class:`~voicerail.session.driver.CallSession`)."""

    call_id: str

    @property
    def started(self) -> bool: ...

    def shut_down(self) -> None: ...


@dataclass(frozen=True)
class DrainResult:
    """What a drain did.

    Attributes:
        finished: calls in progress when the drain began that ended by themselves.
        shut_down: call ids still running at the deadline, ended by the worker.
        waited_s: how long the drain took, seconds of the injected clock.
    """

    finished: int
    shut_down: list[str]
    waited_s: float


async def drain_calls(
    load: LoadMonitor,
    calls: Callable[[], Sequence[DrainableCall]],
    *,
    deadline_s: float,
    poll_s: float = 0.1,
    close_grace_s: float = 5.0,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> DrainResult:
    """Rules 1 and 2: refuse new calls, wait for those in progress, end the rest.

    Args:
        load: the server's load monitor; its ``draining`` flag is set for good.
        calls: the server's current calls (those not ``started`` are ignored).
        deadline_s: how long calls in progress may go on, seconds.
        poll_s: how often the calls are looked at, seconds.
        close_grace_s: how long calls ended at the deadline get to record their
            end and close their sockets, seconds.
        monotonic: the clock, seconds.
        sleep: waits on that clock.
    """
    load.draining = True
    began = monotonic()
    at_start = {c.call_id for c in calls() if c.started}
    log.warning("draining: %d calls in progress, deadline %.1f s", len(at_start), deadline_s)
    while any(c.started for c in calls()) and monotonic() - began < deadline_s:
        await sleep(poll_s)
    late = [c for c in calls() if c.started]
    for call in late:
        log.warning("call %s: drain deadline passed, ending it", call.call_id)
        call.shut_down()
    grace_from = monotonic()
    while late and any(c.started for c in calls()) and monotonic() - grace_from < close_grace_s:
        await sleep(poll_s)
    ids = [c.call_id for c in late]
    return DrainResult(
        finished=len(at_start - set(ids)), shut_down=ids, waited_s=monotonic() - began
    )


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first ``SIGTERM`` runs ``drain`` before stopping.

    Args:
        config: the uvicorn configuration.
        drain: awaited on the first ``SIGTERM``; the server stops when it returns.
        background: awaited in a task while the server runs (a worker watching
            its supervisor); cancelled when it stops.
        stop_listening: close the listening sockets when the drain begins (rule 4).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[Any]],
        *,
        background: Callable[[], Awaitable[Any]] | None = None,
        stop_listening: bool = False,
    ) -> None:
        super().__init__(config)
        self._stop_listening = stop_listening
        self._drain = drain
        self._background = background
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None
        self.drain_result: Any = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        task = None
        if self._background is not None:
            task = self._loop.create_task(_awaited(self._background), name="drain-background")
        try:
            await super().serve(sockets)
        finally:
            if task is not None:
                task.cancel()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Rule 3 for anything but a first ``SIGTERM``; else start the drain.

        The signal is not recorded as captured, so uvicorn does not raise it
        again after serving and the process exits 0.
        """
        if sig != signal.SIGTERM or self._loop is None or self._draining is not None:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._draining is None:
            if self._stop_listening:
                for server in self.servers:  # rule 4; calls in progress go on
                    server.close()
            self._draining = asyncio.get_running_loop().create_task(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        try:
            self.drain_result = await self._drain()
        except Exception:  # task boundary: a failed drain still stops the server
            log.exception("drain failed; stopping now")
        finally:
            self.should_exit = True


async def _awaited(factory: Callable[[], Awaitable[Any]]) -> None:
    await factory()
