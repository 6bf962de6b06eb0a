"""The server side of one Twilio Media Stream, as a sans-I/O protocol object.

Implements the message order of "Media Streams - WebSocket Messages",
https://www.twilio.com/docs/voice/media-streams/websocket-messages (read 2026-11):
``connected``, then ``start`` once, then ``media`` / ``dtmf`` / ``mark``, then
``stop``; and, for bidirectional streams, ``media`` / ``mark`` / ``clear`` back.

Rules :class:`TwilioStreamProtocol` keeps (everything that affects its state lives
in this file):

1. ``connected`` is optional, and allowed only as the very first message.
2. ``start`` comes exactly once, before any ``media``, ``dtmf``, ``mark`` or ``stop``.
3. ``media``, ``dtmf`` and ``mark`` arrive only between ``start`` and ``stop``;
   nothing arrives after ``stop``.
4. Every message's ``streamSid`` equals the one ``start`` announced.
5. ``sequenceNumber``, when present, strictly increases from message to message.
6. ``media`` arrives on a track ``start`` announced, with a chunk number that
   strictly increases on that track.
7. ``start`` announces μ-law at 8 kHz, mono (:data:`MULAW_8000_MONO`): the only
   format the audio pipeline accepts, and the only one Twilio sends.
8. An inbound ``mark`` echoes a mark we sent and that was not echoed yet. Echo
   order is not enforced: the page documents none for marks echoed after ``clear``.
9. ``stop`` names the call ``start`` named.
10. We send only between ``start`` and ``stop``, payloads of 1 to
    :data:`MAX_PAYLOAD_BYTES` bytes and non-empty mark names; otherwise
    :class:`~voicerail.errors.LocalProtocolError`.
11. A rejected message (inbound or outbound) changes nothing: the object stays
    usable for reporting, and every property keeps its value.

The message types and the stateless codec are re-exported from
:mod:`voicerail.wire.twilio_messages` and :mod:`voicerail.wire.twilio_parsing`, so
``from voicerail.wire import twilio`` gives the whole protocol.
"""

from __future__ import annotations

from enum import Enum

from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.twilio_messages import (
    DOC_URL,
    DTMF,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    MULAW_8000_MONO,
    Clear,
    Connected,
    InboundMessage,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    OutboundMessage,
    Start,
    Stop,
    build_start,
    serialize_inbound,
)
from voicerail.wire.twilio_parsing import _quote, parse_inbound, parse_outbound

__all__ = [
    "DOC_URL",
    "DTMF",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MULAW_8000_MONO",
    "Clear",
    "Connected",
    "InboundMessage",
    "Mark",
    "Media",
    "MediaFormat",
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "Start",
    "Stop",
    "StreamState",
    "TwilioStreamProtocol",
    "build_start",
    "parse_inbound",
    "parse_outbound",
    "serialize_inbound",
]


class StreamState(Enum):
    """Where a stream is in its life (rules 2 and 3)."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


# Rules 2 and 3 as a transition table; ``connected`` is handled apart (rule 1).
_TRANSITIONS: dict[tuple[StreamState, str], StreamState] = {
    (StreamState.AWAITING_START, "start"): StreamState.STREAMING,
    (StreamState.STREAMING, "media"): StreamState.STREAMING,
    (StreamState.STREAMING, "dtmf"): StreamState.STREAMING,
    (StreamState.STREAMING, "mark"): StreamState.STREAMING,
    (StreamState.STREAMING, "stop"): StreamState.STOPPED,
}


class TwilioStreamProtocol:
    """The server side of one bidirectional Twilio Media Stream. No I/O.

    Feed each WebSocket text frame to :meth:`receive_data`, then handle
    :meth:`events_received`; call ``send_*`` and write every string of
    :meth:`data_to_send` as one text frame, in order. The module docstring lists
    the rules this object enforces.
    """

    def __init__(self) -> None:
        self._state = StreamState.AWAITING_START
        self._start: Start | None = None
        self._received_any = False
        self._last_sequence_number: int | None = None
        self._last_chunk: dict[str, int] = {}
        self._pending_marks: list[str] = []
        self._events: list[InboundMessage] = []
        self._outgoing: list[str] = []

    # -- properties ------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        """The stream's state."""
        return self._state

    @property
    def start(self) -> Start | None:
        """The ``start`` message, once received."""
        return self._start

    @property
    def stream_sid(self) -> str | None:
        """The stream's SID, once ``start`` was received."""
        return self._start.stream_sid if self._start is not None else None

    @property
    def call_sid(self) -> str | None:
        """The call's SID (personal data), once ``start`` was received."""
        return self._start.call_sid if self._start is not None else None

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Names of the marks sent and not echoed yet, oldest first."""
        return tuple(self._pending_marks)

    # -- inbound ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame from Twilio, check it against the stream, queue the message.

        Args:
            data: one WebSocket text frame (JSON text, or its UTF-8 bytes).

        Raises:
            ProtocolError: the frame is malformed (see
                :func:`~voicerail.wire.twilio_parsing.parse_inbound`) or breaks one of
                rules 1 to 9. Nothing changes and nothing is queued.
        """
        message = parse_inbound(data)
        self._check(message)
        self._apply(message)

    def events_received(self) -> list[InboundMessage]:
        """Return the messages received since the last call, oldest first, and forget them."""
        events, self._events = self._events, []
        return events

    def _check(self, message: InboundMessage) -> None:
        """Raise :class:`ProtocolError` if ``message`` breaks a rule; change nothing."""
        event = message.event
        if isinstance(message, Connected):
            if self._received_any:
                raise ProtocolError("'connected' is only allowed as the first message", event=event)
            return
        if (self._state, event) not in _TRANSITIONS:
            raise ProtocolError(self._order_problem(event), event=event)
        if isinstance(message, Start):
            self._check_media_format(message.media_format)
        else:
            self._check_stream_sid(message.stream_sid, event)
        self._check_sequence_number(message.sequence_number, event)
        if isinstance(message, Media):
            self._check_media(message)
        elif isinstance(message, Mark) and message.name not in self._pending_marks:
            raise ProtocolError(
                f"mark {_quote(message.name)} was never sent or was already echoed", event=event
            )
        elif isinstance(message, Stop) and message.call_sid != self.call_sid:
            # Call SIDs are personal data: no values in the message.
            raise ProtocolError("'stop' names a different call than 'start'", event=event)

    def _order_problem(self, event: str) -> str:
        if self._state is StreamState.AWAITING_START:
            return f"expected 'start' event, got {event!r}"
        if self._state is StreamState.STOPPED:
            return f"unexpected {event!r} event after 'stop'"
        return f"unexpected second {event!r} event"

    @staticmethod
    def _check_media_format(media_format: MediaFormat) -> None:
        if media_format != MULAW_8000_MONO:
            raise ProtocolError(
                f"unsupported media format {_quote(media_format.encoding)} at "
                f"{media_format.sample_rate_hz} hz with {media_format.channels} channel(s); "
                f"expected {MULAW_8000_MONO.encoding!r} at {MULAW_8000_MONO.sample_rate_hz} hz "
                "mono",
                event="start",
            )

    def _check_stream_sid(self, stream_sid: str, event: str) -> None:
        expected = self.stream_sid or ""  # rule 2 was checked: start was received
        if stream_sid != expected:
            raise ProtocolError(
                f"streamSid {_quote(stream_sid)} in {event!r} message does not match the "
                f"stream's {_quote(expected)}",
                event=event,
            )

    def _check_sequence_number(self, sequence_number: int | None, event: str) -> None:
        last = self._last_sequence_number
        if sequence_number is not None and last is not None and sequence_number <= last:
            raise ProtocolError(
                f"sequenceNumber {sequence_number} in {event!r} message is not greater "
                f"than the previous {last}",
                event=event,
            )

    def _check_media(self, media: Media) -> None:
        assert self._start is not None  # rule 2, checked before
        if media.track not in self._start.tracks:
            announced = ", ".join(_quote(track) for track in self._start.tracks)
            raise ProtocolError(
                f"media on track {_quote(media.track)}, which 'start' did not announce "
                f"(tracks: {announced})",
                event="media",
            )
        last = self._last_chunk.get(media.track)
        if last is not None and media.chunk <= last:
            raise ProtocolError(
                f"media chunk {media.chunk} on track {_quote(media.track)} is not greater than "
                f"the previous {last}",
                event="media",
            )

    def _apply(self, message: InboundMessage) -> None:
        """Record a checked message; the only place inbound messages change state."""
        self._received_any = True
        self._events.append(message)
        if isinstance(message, Connected):
            return
        self._state = _TRANSITIONS[(self._state, message.event)]
        if message.sequence_number is not None:
            self._last_sequence_number = message.sequence_number
        if isinstance(message, Start):
            self._start = message
        elif isinstance(message, Media):
            self._last_chunk[message.track] = message.chunk
        elif isinstance(message, Mark):
            self._pending_marks.remove(message.name)  # the oldest mark of that name

    # -- outbound --------------------------------------------------------------------

    def send_media(self, payload: bytes) -> None:
        """Queue audio for Twilio to play to the caller.

        Args:
            payload: μ-law audio, 8 kHz, mono, one byte per sample, 1 to
                :data:`MAX_PAYLOAD_BYTES` bytes (160 bytes is 20 ms).

        Raises:
            LocalProtocolError: the stream is not streaming, or ``payload`` is empty
                or too large.
        """
        stream_sid = self._sending_stream_sid("media")
        if not payload:
            raise LocalProtocolError("cannot send an empty media payload", event="media")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LocalProtocolError(
                f"media payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}",
                event="media",
            )
        self._outgoing.append(OutboundMedia(stream_sid, payload).serialize())

    def send_mark(self, name: str) -> None:
        """Queue a mark after the audio sent so far; Twilio echoes it once played.

        The name joins :attr:`pending_marks` until the echo arrives.

        Args:
            name: the mark's name; names may repeat.

        Raises:
            LocalProtocolError: the stream is not streaming, or ``name`` is empty.
        """
        stream_sid = self._sending_stream_sid("mark")
        if not name:
            raise LocalProtocolError("cannot send a mark with an empty name", event="mark")
        self._outgoing.append(OutboundMark(stream_sid, name).serialize())
        self._pending_marks.append(name)

    def send_clear(self) -> None:
        """Queue a ``clear``: Twilio drops the audio it has not played yet (barge-in).

        Pending marks stay pending: Twilio echoes them when it clears.

        Raises:
            LocalProtocolError: the stream is not streaming.
        """
        self._outgoing.append(Clear(self._sending_stream_sid("clear")).serialize())

    def data_to_send(self) -> list[str]:
        """Return the text frames queued since the last call, in order, and forget them."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def _sending_stream_sid(self, event: str) -> str:
        if self._state is StreamState.AWAITING_START:
            raise LocalProtocolError(f"cannot send {event!r} before 'start'", event=event)
        if self._state is StreamState.STOPPED:
            raise LocalProtocolError(f"cannot send {event!r} after 'stop'", event=event)
        assert self._start is not None  # STREAMING implies a start
        return self._start.stream_sid
