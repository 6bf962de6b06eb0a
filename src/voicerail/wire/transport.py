"""The seam between a call and the way it arrives: :class:`MediaTransport`.

A transport is a sans-I/O protocol object for one media connection (a Twilio,
Telnyx or Plivo media stream, a Vonage WebSocket, a SIP call's RTP in
``wire/sip_transport.py``; later a browser page). The call driver
(``session/driver.py``) knows only this interface; the server feeds it the
socket's frames and writes what it hands back.

What a transport gives the call, as :data:`TransportEvent` values:

* :class:`CallAnswered` once, when the provider announced the call (its ids,
  caller, custom parameters, the inbound format);
* :class:`AudioReceived`: the caller's audio, always converted to signed 16-bit
  little-endian mono PCM at 8 kHz (:data:`CALL_RATE_HZ`), whatever the wire
  carries, so the media clock of the call is "seconds of PCM received";
* :class:`DigitPressed`: a DTMF key;
* :class:`PlaybackMarked`: the audio sent before a mark has been played;
* :class:`CallHungUp`: the provider ended the stream (a socket that merely
  closes is a hang-up too: the driver ends the call when the frames stop).

What a transport takes: ``send_audio`` (μ-law 8 kHz frames, the format the TTS
path and the phrase cache produce), ``send_mark``, ``send_clear``. Hanging up is
closing the connection (the server's ``close`` callback), and a transfer is done
at the provider's webhook or REST API, outside the media connection; neither is
a message on the stream for the providers supported so far.

Rules every implementation keeps:

1. ``receive_data`` either queues events or raises
   :class:`~voicerail.errors.ProtocolError` and changes nothing (the peer's
   fault; the driver closes that one call with 1008).
2. ``send_*`` raise :class:`~voicerail.errors.LocalProtocolError` when called
   outside :attr:`MediaTransport.sending`; the driver checks ``sending`` first.
3. A mark is echoed at most once. After ``send_clear`` the marks still pending
   may or may not come back (Twilio and Telnyx echo them, Plivo and Vonage do
   not); the driver drops its playback tracker at a barge-in, so it never waits
   on them.
4. ``data_to_send`` returns text frames (``str``) and binary frames
   (``bytes``) in order.
5. Optional: a transport that shows the call to its caller (the browser page,
   ``wire/browser.py``) defines ``observe_event(event)``; the driver then hands
   it every event as recorded, and writes what it queued within a tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: The call's internal audio rate: PCM16 in, μ-law out, both at 8 kHz.
CALL_RATE_HZ = 8000


@dataclass(frozen=True)
class CallAnswered:
    """The provider announced the call on this connection.

    Attributes:
        call_ref: the provider's call id (Twilio CallSid, Telnyx call_control_id,
            Plivo CallUUID, Vonage uuid); personal data only by linkage.
        stream_ref: the media stream's id (or ``call_ref`` where there is none).
        caller: the calling number when the provider says it; personal data.
        custom_parameters: values the webhook attached to the stream; personal data.
        tracks: the inbound tracks announced.
        encoding: the wire encoding, as the provider names it.
        sample_rate_hz: the wire sample rate.
    """

    call_ref: str
    stream_ref: str
    caller: str = ""
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ("inbound",)
    encoding: str = "audio/x-mulaw"
    sample_rate_hz: int = CALL_RATE_HZ


@dataclass(frozen=True)
class AudioReceived:
    """Caller audio: signed 16-bit little-endian mono PCM at 8 kHz."""

    pcm: bytes


@dataclass(frozen=True)
class DigitPressed:
    """The caller pressed a key (``0-9``, ``*``, ``#``, ``A-D``); personal data."""

    digit: str


@dataclass(frozen=True)
class PlaybackMarked:
    """The audio queued before mark ``name`` has been played to the caller."""

    name: str


@dataclass(frozen=True)
class CallHungUp:
    """The provider ended the stream (the call is over)."""


TransportEvent = CallAnswered | AudioReceived | DigitPressed | PlaybackMarked | CallHungUp


class MediaTransport(Protocol):
    """One call's media connection, without I/O (see the module rules)."""

    #: The provider's name: ``"twilio"``, ``"telnyx"``, ``"plivo"``, ``"vonage"``,
    #: ``"browser"``, ``"sip"``.
    name: str

    @property
    def sending(self) -> bool:
        """True while audio, marks and clears may be sent (after the call was
        answered, before it hung up)."""
        ...

    @property
    def call_ref(self) -> str | None:
        """The provider's call id, once answered."""
        ...

    @property
    def stream_ref(self) -> str | None:
        """The media stream's id, once answered."""
        ...

    def receive_data(self, data: str | bytes) -> None:
        """Parse one WebSocket frame (text or binary) and queue its events.

        Raises:
            ProtocolError: the frame is malformed or out of order; nothing changes.
        """
        ...

    def events_received(self) -> list[TransportEvent]:
        """The events queued since the last call, oldest first; forgets them."""
        ...

    def send_audio(self, ulaw: bytes) -> None:
        """Queue agent audio: μ-law, 8 kHz, mono, one byte a sample (160 per 20 ms).

        Raises:
            LocalProtocolError: not :attr:`sending`, or an empty or oversized payload.
        """
        ...

    def send_mark(self, name: str) -> None:
        """Queue a mark after the audio sent so far; its echo is a :class:`PlaybackMarked`.

        Raises:
            LocalProtocolError: not :attr:`sending`, or an empty name.
        """
        ...

    def send_clear(self) -> None:
        """Queue a clear: the provider drops the audio it has not played (barge-in).

        Raises:
            LocalProtocolError: not :attr:`sending`.
        """
        ...

    def data_to_send(self) -> list[str | bytes]:
        """The frames queued since the last call, in order; forgets them."""
        ...
