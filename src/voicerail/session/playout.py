"""Agent audio out: queued 20 ms frames and marks, paced to the caller's ear.

Rules:

1. Audio is μ-law 8 kHz in 20 ms frames (160 bytes); a frame is sent at most
   ``lead_s`` ahead of the time it will play (the playhead), so that a barge-in
   leaves at most ``lead_s`` of audio queued at the provider.
2. Frames already queued are grouped ``frames_per_message`` to a message; a mark
   is sent after the frames queued before it and ends a group.
3. Every queued item carries the generation it was queued in; :meth:`Playout.cut`
   (a barge-in) starts a new generation, so everything older is dropped unsent,
   and the provider is told to drop what it holds (``clear``).
4. Nothing is sent while the transport is not :attr:`~MediaTransport.sending`
   (before the call is answered, after it hung up): items are dropped.
5. Every wait is on the call's clock; sends are serialized by one lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voicerail.clock import Clock
from voicerail.wire.transport import MediaTransport

FRAME_S = 0.02
ULAW_FRAME_NUM_BYTES = 160

#: Sends one WebSocket frame: text (``str``) or binary (``bytes``).
SendFrame = Callable[[str | bytes], Awaitable[None]]


class Playout:
    """One call's outbound audio queue and its pacer.

    Args:
        transport: the call's transport (encodes what is sent).
        send: writes one frame to the socket.
        clock: the call's clock.
        lead_s: how far ahead of its play time a frame may be sent, seconds.
        frames_per_message: 20 ms frames grouped into one message when queued.
    """

    def __init__(
        self,
        transport: MediaTransport,
        send: SendFrame,
        clock: Clock,
        *,
        lead_s: float,
        frames_per_message: int = 1,
    ) -> None:
        self._transport = transport
        self._send = send
        self._clock = clock
        self._lead_s = lead_s
        self._per_message = max(1, frames_per_message)
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[tuple[int, bytes | str]] = asyncio.Queue()
        self.generation = 0
        self._playhead_s = 0.0

    @property
    def sending(self) -> bool:
        """The transport may send (rule 4)."""
        return self._transport.sending

    def queue_audio(self, generation: int, ulaw: bytes) -> None:
        """Queue μ-law audio (whole 20 ms frames, concatenated) of ``generation``."""
        for k in range(0, len(ulaw), ULAW_FRAME_NUM_BYTES):
            self._queue.put_nowait((generation, ulaw[k : k + ULAW_FRAME_NUM_BYTES]))

    def queue_mark(self, generation: int, name: str) -> None:
        """Queue a mark after the audio queued so far."""
        self._queue.put_nowait((generation, name))

    async def cut(self) -> None:
        """Drop everything queued and tell the provider to drop what it holds (rule 3)."""
        self.generation += 1
        self._playhead_s = self._clock.monotonic()
        if self.sending:
            self._transport.send_clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what the transport has to send, in order."""
        async with self._lock:
            for frame in self._transport.data_to_send():
                await self._send(frame)

    async def run(self) -> None:
        """Send queued items as they come, paced (rules 1 and 2); runs until cancelled."""
        carried: tuple[int, bytes | str] | None = None
        while True:
            if carried is not None:
                (generation, item), carried = carried, None
            else:
                generation, item = await self._queue.get()
            if generation != self.generation or not self.sending:
                continue
            if isinstance(item, str):
                self._transport.send_mark(item)
                await self.flush()
                continue
            frames = [item]
            while len(frames) < self._per_message and not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued[0] == generation and isinstance(queued[1], bytes):
                    frames.append(queued[1])
                else:
                    carried = queued  # a mark or a new reply: handled next
                    break
            now = self._clock.monotonic()
            self._playhead_s = max(self._playhead_s, now)
            delay = self._playhead_s - self._lead_s - now
            if delay > 0:
                await self._clock.sleep(delay)
            if generation != self.generation or not self.sending:
                continue
            self._transport.send_audio(b"".join(frames) if len(frames) > 1 else item)
            await self.flush()
            self._playhead_s += FRAME_S * len(frames)
