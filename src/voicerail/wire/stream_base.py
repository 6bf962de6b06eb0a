"""What the JSON media-stream codecs (Telnyx, Plivo, Vonage, browser) share.

Each codec keeps its own rules and message order; this module holds only the
parts that were the same in all of them, so one fix reaches every provider:

- :class:`QueuedStream`: the answered call, the events parsed and not yet taken
  (``events_received()``) and the frames queued and not yet sent
  (``data_to_send()``), as :class:`~voicerail.wire.transport.MediaTransport` asks.
- :func:`check_dtmf_digit`, :func:`check_ulaw_payload`, :func:`check_l16_frame`:
  checks whose error messages the codecs' tests pin; the event and field names
  come from the caller, so each provider's wording is unchanged.

No I/O, like the codecs themselves.
"""

from __future__ import annotations

import base64

from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire.transport import CallAnswered, TransportEvent

DTMF_KEYS = frozenset("0123456789*#ABCD")
"""The sixteen DTMF keys (ITU-T Q.23), as every provider spells them."""


class QueuedStream:
    """The queues and answered call a media-stream codec keeps (no I/O).

    A codec sets ``self._call`` when its start message is accepted, appends parsed
    events to ``self._events`` and outgoing frames to ``self._outgoing``.
    """

    def __init__(self) -> None:
        self._call: CallAnswered | None = None
        self._events: list[TransportEvent] = []
        self._outgoing: list[str | bytes] = []

    @property
    def call_ref(self) -> str | None:
        """The provider's id of the call; None before the start message."""
        return self._call.call_ref if self._call is not None else None

    @property
    def stream_ref(self) -> str | None:
        """The provider's id of this stream; None before the start message."""
        return self._call.stream_ref if self._call is not None else None

    def events_received(self) -> list[TransportEvent]:
        """Take the events parsed since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str | bytes]:
        """Take the frames queued since the last call (text JSON or binary audio)."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing


def check_dtmf_digit(digit: str, field: str, event: str) -> str:
    """Return ``digit`` if it is one DTMF key.

    Raises:
        ProtocolError: anything else. Digits are personal data: the message names
            the field, never the value.
    """
    if len(digit) != 1 or digit not in DTMF_KEYS:
        raise ProtocolError(f"field {field!r} in {event!r} message is not a dtmf key", event=event)
    return digit


def check_ulaw_payload(ulaw: bytes, event: str, max_num_bytes: int) -> str:
    """Return μ-law bytes we send as base64 text, checked to be 1 to ``max_num_bytes``.

    Raises:
        LocalProtocolError: an empty or too long payload (our fault, not the peer's).
    """
    if not ulaw or len(ulaw) > max_num_bytes:
        raise LocalProtocolError(
            f"{event} payload of {len(ulaw)} bytes is outside 1 to {max_num_bytes}",
            event=event,
        )
    return base64.b64encode(ulaw).decode("ascii")


def check_l16_frame(data: bytes, max_num_bytes: int) -> None:
    """Check an inbound binary frame is whole 16-bit samples, at most ``max_num_bytes``.

    Raises:
        ProtocolError: an odd length or a frame over the limit.
    """
    if len(data) % 2 or len(data) > max_num_bytes:
        raise ProtocolError(
            f"audio frame of {len(data)} bytes is not whole 16-bit samples of at most "
            f"{max_num_bytes} bytes",
            event="audio",
        )
