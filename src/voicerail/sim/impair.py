"""Network impairment on a simulated call's media path: delay, jitter, loss.

Two ways, one specification (:class:`Impairment`):

* In process (the default): every WebSocket message a caller sends or receives
  passes through an :class:`ImpairedLink`, which holds it for ``delay ± jitter``
  and drops media messages with probability ``loss``. Delivery keeps the order
  (the media stream is one TCP connection, so a late message delays those
  behind it, as head-of-line blocking does). Only ``media`` messages are
  dropped: a lost RTP packet on the phone leg means a missing 20 ms frame, while
  control messages (``start``, ``mark``, ``stop``) are never lost.
* Linux ``tc netem`` on the loopback interface of a private network namespace
  (``unshare --net``), when run as root and the kernel has ``sch_netem``. Then
  the whole simulation (server included) runs inside the namespace, and netem
  delays every packet in each direction. See :func:`netem_available` and
  :func:`netem_command`.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from voicerail.errors import ConfigError


@dataclass(frozen=True)
class Impairment:
    """Network impairment of the media path, per direction.

    Attributes:
        delay_s: one-way delay added to each message, seconds.
        jitter_s: uniform random variation of the delay (± this), seconds.
        loss: probability of dropping each media message, 0..1.
    """

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay and jitter must not be negative")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be within 0..1, got {self.loss}")

    @property
    def active(self) -> bool:
        """True when it changes anything."""
        return bool(self.delay_s or self.jitter_s or self.loss)


def parse_impairment(spec: str) -> Impairment:
    """Parse ``delay=MS,jitter=MS,loss=PCT`` (any subset, any order).

    Raises:
        ConfigError: an unknown key or a value that is not a number in range.
    """
    values = {"delay": 0.0, "jitter": 0.0, "loss": 0.0}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ConfigError(
                f"impairment {part!r}: expected delay=MS, jitter=MS or loss=PCT",
                source="--impair",
            )
        try:
            values[key] = float(raw.strip().removesuffix("%").removesuffix("ms"))
        except ValueError:
            raise ConfigError(
                f"impairment {key}: {raw!r} is not a number", source="--impair"
            ) from None
    try:
        return Impairment(values["delay"] / 1000, values["jitter"] / 1000, values["loss"] / 100)
    except ValueError as exc:
        raise ConfigError(str(exc), source="--impair") from None


class ImpairedLink:
    """Delays and drops one call's WebSocket messages, both directions.

    Args:
        impairment: what to apply.
        seed: seed of the random draws (one per call, so runs are reproducible).
        clock: monotonic clock, seconds.
    """

    def __init__(
        self,
        impairment: Impairment,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.impairment = impairment
        self._rng = random.Random(seed)
        self._clock = clock
        self._up: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self._last_due = {"up": 0.0, "down": 0.0}
        self._sending = False
        self.dropped_up = 0
        self.dropped_down = 0

    def _due(self, direction: str) -> float:
        imp = self.impairment
        extra = self._rng.uniform(-imp.jitter_s, imp.jitter_s) if imp.jitter_s else 0.0
        due = max(self._last_due[direction], self._clock() + max(0.0, imp.delay_s + extra))
        self._last_due[direction] = due
        return due

    def _lost(self, text: str) -> bool:
        return (
            bool(self.impairment.loss)
            and is_media(text)
            and (self._rng.random() < self.impairment.loss)
        )

    def send(self, text: str) -> None:
        """Queue ``text`` for the uplink (caller → server); may drop it if it is media."""
        if self._lost(text):
            self.dropped_up += 1
            return
        self._up.put_nowait((self._due("up"), text))

    @property
    def idle(self) -> bool:
        """True when the uplink holds no message."""
        return self._up.empty() and not self._sending

    async def pump_uplink(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Forward queued uplink messages when due; runs until cancelled."""
        while True:
            due, text = await self._up.get()
            self._sending = True
            try:
                wait_s = due - self._clock()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                await send(text)
            finally:
                self._sending = False

    async def downlink(self, incoming: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
        """Messages of ``incoming`` (server → caller), delayed and thinned as configured.

        Raises:
            Exception: whatever iterating ``incoming`` raised (a closed connection),
                once the messages received before it were delivered.
        """
        held: asyncio.Queue[tuple[float, str | bytes] | BaseException | None] = asyncio.Queue()

        async def pull() -> None:
            try:
                async for message in incoming:
                    text = message if isinstance(message, str) else ""
                    if text and self._lost(text):
                        self.dropped_down += 1
                        continue
                    held.put_nowait((self._due("down"), message))
            except Exception as exc:  # task boundary: handed to the consumer below
                held.put_nowait(exc)
            else:
                held.put_nowait(None)

        puller = asyncio.create_task(pull())
        try:
            while True:
                item = await held.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                due, message = item
                wait_s = due - self._clock()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                yield message
        finally:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)


def is_media(text: str) -> bool:
    """True for a Twilio ``media`` message (inbound or outbound), by its first bytes."""
    return '"event":"media"' in text[:40] or '"event": "media"' in text[:40]


# -- tc netem ----------------------------------------------------------------------


def netem_available() -> bool:
    """True when this process is root and a new network namespace accepts a netem qdisc."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("tc")):
        return False
    probe = "ip link set lo up && tc qdisc add dev lo root netem delay 1ms"
    try:
        done = subprocess.run(
            ["unshare", "--net", "sh", "-c", probe], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def netem_command(impairment: Impairment, argv: list[str]) -> list[str]:
    """The command that runs ``argv`` in a new network namespace whose loopback has
    ``impairment`` as a netem qdisc. Addresses inside are loopback only.

    Netem delays each packet once per direction, as the in-process link does.
    """
    delay_ms = impairment.delay_s * 1000
    jitter_ms = impairment.jitter_s * 1000
    netem = f"delay {delay_ms:.3f}ms"
    if jitter_ms:
        netem += f" {jitter_ms:.3f}ms"
    if impairment.loss:
        netem += f" loss {impairment.loss * 100:.3f}%"
    quoted = " ".join(_quote(a) for a in argv)
    script = f"ip link set lo up && tc qdisc add dev lo root netem {netem} && exec {quoted}"
    return ["unshare", "--net", "sh", "-c", script]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"
