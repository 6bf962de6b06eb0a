""":class:`SipTransport`: one SIP call's RTP media behind the
:class:`~voicerail.wire.transport.MediaTransport` seam.

The SIP dialog (INVITE, ACK, BYE, re-INVITE, CANCEL, REFER) is the endpoint's
(``server/sip_server.py`` over ``wire/sip.py``); this class is the media half,
without I/O.

Rules:

1. ``receive_data`` takes RTP datagrams (``bytes``) from the caller's media
   address, and the endpoint's notes about the dialog (``str``): :data:`ANSWERED`
   (the ACK of our 200 arrived: the call exists), :data:`HUNG_UP` (BYE or CANCEL)
   and :data:`PLAYED` (the pacer passed a mark; events are queued). Anything else
   raises :class:`~voicerail.errors.ProtocolError` and changes nothing.
2. Inbound PCMU (payload type 0) becomes :class:`AudioReceived` (PCM16, 8 kHz);
   telephone-event packets (RFC 4733 §2.5.1.3) become one :class:`DigitPressed`
   per event, at its first end packet (the end packet is sent three times, and
   an event is known by its RTP timestamp); other payload types (comfort noise)
   and RTCP are ignored.
3. Outbound there is no provider buffer: ``send_audio`` and ``send_mark`` queue
   here, and the endpoint's pacer takes one 20 ms frame per tick of the call's
   clock with :meth:`SipTransport.next_packet`; a mark is echoed when the pacer
   reaches it (what was sent is what was played: RTP has no playback report).
   ``send_clear`` drops what is queued, marks included (transport rule 3).
   :meth:`data_to_send` is therefore always empty.
"""

from __future__ import annotations

import random
from collections import deque

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire import rtp
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
    TransportEvent,
)

ANSWERED = "answered"
HUNG_UP = "hung-up"
PLAYED = "played"
FRAME_NUM_BYTES = 160  # 20 ms of μ-law at 8 kHz
_MAX_QUEUED_FRAMES = 3000  # one minute: the driver paces at playback_lead_s ahead


class SipTransport:
    """The media of one SIP call (see the module rules).

    Args:
        call_ref: the dialog's Call-ID.
        caller: the From URI's user part; personal data.
        event_payload_type: telephone-event's payload type agreed in SDP, or None.
        ssrc: our RTP source id (random when None).
    """

    name = "sip"

    def __init__(
        self,
        call_ref: str,
        caller: str = "",
        *,
        event_payload_type: int | None = None,
        ssrc: int | None = None,
    ) -> None:
        self._call_ref = call_ref
        self._caller = caller
        self.event_payload_type = event_payload_type
        self._ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._answered = False
        self._hung_up = False
        self._events: list[TransportEvent] = []
        self._outbound: deque[bytes | str] = deque()
        self._num_frames_queued = 0
        self._digits_seen: set[int] = set()  # event timestamps already reported
        self._talking = False  # the last tick sent audio (marker bit after silence)

    @property
    def sending(self) -> bool:
        return self._answered and not self._hung_up

    @property
    def call_ref(self) -> str | None:
        return self._call_ref if self._answered else None

    @property
    def stream_ref(self) -> str | None:
        return self.call_ref

    def receive_data(self, data: str | bytes) -> None:
        """Take one RTP datagram or one endpoint note (rule 1).

        Raises:
            ProtocolError: an unknown note, or an RTP packet that does not parse
                (``wire/rtp.py``); nothing changes.
        """
        if isinstance(data, str):
            self._receive_note(data)
            return
        if rtp.is_rtcp(data):
            return
        packet = rtp.parse_rtp(data)
        if not self.sending:
            return  # early media before the ACK, or after BYE: not part of the call
        if packet.payload_type == rtp.PCMU:
            if packet.payload:
                self._events.append(AudioReceived(ulaw_to_pcm16(packet.payload)))
        elif packet.payload_type == self.event_payload_type:
            event = rtp.parse_event(packet.payload)
            if event is not None and event.ended and packet.timestamp not in self._digits_seen:
                if len(self._digits_seen) > 256:
                    self._digits_seen.clear()
                self._digits_seen.add(packet.timestamp)
                self._events.append(DigitPressed(event.digit))

    def _receive_note(self, note: str) -> None:
        if note == ANSWERED:
            if not self._answered:
                self._answered = True
                self._events.append(
                    CallAnswered(
                        call_ref=self._call_ref,
                        stream_ref=self._call_ref,
                        caller=self._caller,
                        custom_parameters={"from": self._caller} if self._caller else {},
                        encoding="audio/PCMU",
                    )
                )
        elif note == HUNG_UP:
            if not self._hung_up:
                self._hung_up = True
                self._events.append(CallHungUp())
        elif note != PLAYED:
            raise ProtocolError(f"unknown sip endpoint note {note[:20]!r}", event="sip")

    def events_received(self) -> list[TransportEvent]:
        events, self._events = self._events, []
        return events

    def send_audio(self, ulaw: bytes) -> None:
        """Queue μ-law 8 kHz audio in 20 ms frames (rule 3).

        Raises:
            LocalProtocolError: not :attr:`sending`, empty audio, or a minute queued.
        """
        self._check_sending("audio")
        if not ulaw:
            raise LocalProtocolError("empty audio payload")
        if self._num_frames_queued > _MAX_QUEUED_FRAMES:
            raise LocalProtocolError(f"{self._num_frames_queued} frames already queued")
        for k in range(0, len(ulaw), FRAME_NUM_BYTES):
            frame = ulaw[k : k + FRAME_NUM_BYTES]
            if len(frame) < FRAME_NUM_BYTES:
                frame += b"\xff" * (FRAME_NUM_BYTES - len(frame))  # μ-law silence
            self._outbound.append(frame)
            self._num_frames_queued += 1

    def send_mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (rule 3).

        Raises:
            LocalProtocolError: not :attr:`sending`, or an empty name.
        """
        self._check_sending("mark")
        if not name:
            raise LocalProtocolError("empty mark name")
        self._outbound.append(name)

    def send_clear(self) -> None:
        """Drop the queued audio and marks (rule 3).

        Raises:
            LocalProtocolError: not :attr:`sending`.
        """
        self._check_sending("clear")
        self._outbound.clear()
        self._num_frames_queued = 0

    def data_to_send(self) -> list[str | bytes]:
        return []  # rule 3: the pacer takes packets with next_packet()

    def next_packet(self) -> tuple[bytes | None, bool]:
        """One 20 ms tick of the pacer: the RTP packet to send now, if any, and
        whether marks were passed (events queued; the endpoint then feeds
        :data:`PLAYED` so the driver reads them).

        The RTP timestamp advances 160 every tick, audio or not (RFC 3550 §5.1);
        the first packet after silence has the marker bit (RFC 3551 §4.1).
        """
        marked = False
        while self._outbound and isinstance(self._outbound[0], str):
            name = self._outbound.popleft()
            assert isinstance(name, str)
            self._events.append(PlaybackMarked(name))
            marked = True
        packet: bytes | None = None
        if self._outbound:
            frame = self._outbound.popleft()
            assert isinstance(frame, bytes)
            self._num_frames_queued -= 1
            packet = rtp.RtpPacket(
                rtp.PCMU,
                self._sequence,
                self._timestamp,
                self._ssrc,
                frame,
                marker=not self._talking,
            ).serialize()
            self._sequence = (self._sequence + 1) & 0xFFFF
            self._talking = True
        else:
            self._talking = False
        self._timestamp = (self._timestamp + FRAME_NUM_BYTES) & 0xFFFFFFFF
        return packet, marked

    def _check_sending(self, what: str) -> None:
        if not self.sending:
            raise LocalProtocolError(f"cannot send {what}: sip call not answered or hung up")
