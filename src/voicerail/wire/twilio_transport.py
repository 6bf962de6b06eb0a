""":class:`TwilioTransport`: Twilio Media Streams behind the
:class:`~voicerail.wire.transport.MediaTransport` seam.

The order rules and the codec are :class:`~voicerail.wire.twilio.TwilioStreamProtocol`'s,
unchanged on the wire; this class only turns its messages into transport events
and refuses binary frames (Twilio sends JSON in text frames only,
https://www.twilio.com/docs/voice/media-streams/websocket-messages, read 2026-11).
"""

from __future__ import annotations

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import ProtocolError
from voicerail.wire import twilio
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
    TransportEvent,
)


class TwilioTransport:
    """One Twilio Media Stream as a :class:`~voicerail.wire.transport.MediaTransport`."""

    name = "twilio"

    def __init__(self) -> None:
        self.proto = twilio.TwilioStreamProtocol()

    @property
    def sending(self) -> bool:
        return self.proto.state is twilio.StreamState.STREAMING

    @property
    def call_ref(self) -> str | None:
        return self.proto.call_sid

    @property
    def stream_ref(self) -> str | None:
        return self.proto.stream_sid

    def receive_data(self, data: str | bytes) -> None:
        """Parse one frame (see :meth:`TwilioStreamProtocol.receive_data`).

        Raises:
            ProtocolError: a binary frame, or whatever the protocol refuses.
        """
        if isinstance(data, bytes):
            raise ProtocolError(f"binary frame of {len(data)} bytes; twilio sends text frames only")
        self.proto.receive_data(data)

    def events_received(self) -> list[TransportEvent]:
        events: list[TransportEvent] = []
        for message in self.proto.events_received():
            if isinstance(message, twilio.Media):
                events.append(AudioReceived(ulaw_to_pcm16(message.payload)))
            elif isinstance(message, twilio.Mark):
                events.append(PlaybackMarked(message.name))
            elif isinstance(message, twilio.Start):
                events.append(
                    CallAnswered(
                        call_ref=message.call_sid,
                        stream_ref=message.stream_sid,
                        caller=message.custom_parameters.get("from", ""),
                        custom_parameters=dict(message.custom_parameters),
                        tracks=message.tracks,
                        encoding=message.media_format.encoding,
                        sample_rate_hz=message.media_format.sample_rate_hz,
                    )
                )
            elif isinstance(message, twilio.DTMF):
                events.append(DigitPressed(message.digit))
            elif isinstance(message, twilio.Stop):
                events.append(CallHungUp())
        return events

    def send_audio(self, ulaw: bytes) -> None:
        self.proto.send_media(ulaw)

    def send_mark(self, name: str) -> None:
        self.proto.send_mark(name)

    def send_clear(self) -> None:
        self.proto.send_clear()

    def data_to_send(self) -> list[str | bytes]:
        return list(self.proto.data_to_send())
