"""A :class:`~voicerail.wire.transport.MediaTransport` driven by a test, no socket.

The test pushes transport events (:meth:`FakeTransport.push`); the call driver
reads them through :meth:`FakeTransport.frames` (the "socket"), and everything the
driver sends is kept in :attr:`FakeTransport.sent`. Marks are echoed at once when
``echo_marks`` is on (the caller "hears" audio as soon as it is sent); a test that
needs a reply still playing (barge-in) turns it off and echoes with :meth:`play_all`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from voicerail.errors import LocalProtocolError
from voicerail.wire.transport import (
    CallAnswered,
    CallHungUp,
    PlaybackMarked,
    TransportEvent,
)


class FakeTransport:
    """A media transport whose peer is the test.

    Args:
        echo_marks: echo every mark as soon as it is sent.
    """

    name = "fake"

    def __init__(self, *, echo_marks: bool = True) -> None:
        self.echo_marks = echo_marks
        #: What the driver sent, in order: ("audio", μ-law), ("mark", name), ("clear", "").
        self.sent: list[tuple[str, bytes | str]] = []
        self._inbox: asyncio.Queue[TransportEvent | None] = asyncio.Queue()
        self._arrived: list[TransportEvent] = []
        self._events: list[TransportEvent] = []
        self._answered: CallAnswered | None = None
        self._hung_up = False
        self._unechoed: list[str] = []

    # -- the test's side -------------------------------------------------------------

    def push(self, *events: TransportEvent) -> None:
        """Queue events from the "provider", in order."""
        for event in events:
            self._inbox.put_nowait(event)

    def disconnect(self) -> None:
        """The socket closes (after what was pushed)."""
        self._inbox.put_nowait(None)

    def play_all(self) -> None:
        """Echo every mark sent and not echoed yet (all queued audio was heard)."""
        names, self._unechoed = self._unechoed, []
        self.push(*(PlaybackMarked(name) for name in names))

    async def frames(self) -> AsyncIterator[bytes]:
        """The "socket" the driver reads: one empty frame per pushed event."""
        while True:
            event = await self._inbox.get()
            if event is None:
                return
            self._arrived.append(event)
            yield b""

    def sent_kinds(self) -> list[str]:
        """The kinds of :attr:`sent`, with runs of audio collapsed to one."""
        kinds: list[str] = []
        for kind, _ in self.sent:
            if not (kind == "audio" and kinds and kinds[-1] == "audio"):
                kinds.append(kind)
        return kinds

    # -- the MediaTransport side -----------------------------------------------------

    @property
    def sending(self) -> bool:
        return self._answered is not None and not self._hung_up

    @property
    def call_ref(self) -> str | None:
        return self._answered.call_ref if self._answered else None

    @property
    def stream_ref(self) -> str | None:
        return self._answered.stream_ref if self._answered else None

    def receive_data(self, data: str | bytes) -> None:
        event = self._arrived.pop(0)
        if isinstance(event, CallAnswered):
            self._answered = event
        elif isinstance(event, CallHungUp):
            self._hung_up = True
        self._events.append(event)

    def events_received(self) -> list[TransportEvent]:
        events, self._events = self._events, []
        return events

    def _check(self, what: str) -> None:
        if not self.sending:
            raise LocalProtocolError(f"cannot send {what!r} outside the call", event=what)

    def send_audio(self, ulaw: bytes) -> None:
        self._check("audio")
        self.sent.append(("audio", ulaw))

    def send_mark(self, name: str) -> None:
        self._check("mark")
        self.sent.append(("mark", name))
        if self.echo_marks:
            self.push(PlaybackMarked(name))
        else:
            self._unechoed.append(name)

    def send_clear(self) -> None:
        self._check("clear")
        self.sent.append(("clear", ""))
        self._unechoed.clear()  # the cleared audio's marks are not echoed

    def data_to_send(self) -> list[str | bytes]:
        return []
