"""RTP packets (RFC 3550 §5.1), telephone events (RFC 4733 §2.3) and the SDP
offer/answer of one audio stream (RFC 4566, RFC 3264). No I/O.

Rules:

1. Only what a G.711 phone call needs: RTP version 2, no header extension is
   interpreted (it is skipped, §5.3.1), padding is removed (§5.1), CSRCs skipped.
2. A packet that breaks the header grammar raises
   :class:`~voicerail.errors.ProtocolError` naming the section; RTCP (payload
   types 72-76 with the marker, RFC 5761 §4) is recognised and ignored by callers.
3. The SDP answer offers PCMU/8000 (payload type 0) and telephone-event/8000 at
   the offer's payload type (RFC 3264 §6.1: the answer keeps the offer's numbers).

Sources: RFC 3550, RFC 4733, RFC 4566, RFC 3264 (rfc-editor.org, read 2026-12).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voicerail.errors import ProtocolError

PCMU = 0
_HEADER = struct.Struct("!BBHII")
_EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    Attributes:
        payload_type: 0-127.
        sequence: 16-bit sequence number.
        timestamp: 32-bit media timestamp (8 kHz units for PCMU).
        ssrc: 32-bit source id.
        payload: the payload bytes (μ-law for PCMU, one byte a sample).
        marker: the marker bit.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def serialize(self) -> bytes:
        first = 0x80  # version 2, no padding, no extension, no CSRC
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return (
            _HEADER.pack(
                first,
                second,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )


def is_rtcp(datagram: bytes) -> bool:
    """True for an RTCP packet sharing the port (RFC 5761 §4: types 200-204)."""
    return len(datagram) >= 2 and 192 <= datagram[1] <= 223


def parse_rtp(datagram: bytes) -> RtpPacket:
    """Parse one RTP datagram.

    Raises:
        ProtocolError: shorter than 12 bytes, version not 2, CSRCs, extension or
            padding running past the end (RFC 3550 §5.1, §5.3.1).
    """
    if len(datagram) < _HEADER.size:
        raise ProtocolError(
            f"rtp packet of {len(datagram)} bytes is shorter than 12 (rfc 3550 §5.1)"
        )
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(datagram)
    if first >> 6 != 2:
        raise ProtocolError(f"rtp version {first >> 6}, expected 2 (rfc 3550 §5.1)")
    offset = _HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:
        if len(datagram) < offset + 4:
            raise ProtocolError("rtp header extension runs past the packet (rfc 3550 §5.3.1)")
        (words,) = struct.unpack_from("!H", datagram, offset + 2)
        offset += 4 + 4 * words
    end = len(datagram)
    if first & 0x20:
        end -= datagram[-1]
    if offset > end:
        raise ProtocolError(
            f"rtp header of {offset} bytes runs past the {end}-byte packet (rfc 3550 §5.1)"
        )
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=datagram[offset:end],
        marker=bool(second & 0x80),
    )


@dataclass(frozen=True)
class TelephoneEvent:
    """An RFC 4733 §2.3 event payload: ``digit`` and whether it has ``ended``."""

    digit: str
    ended: bool
    duration: int


def parse_event(payload: bytes) -> TelephoneEvent | None:
    """The DTMF event of a telephone-event payload; None for events other than 0-15.

    Raises:
        ProtocolError: the payload is shorter than 4 bytes (rfc 4733 §2.3).
    """
    if len(payload) < 4:
        raise ProtocolError(
            f"telephone-event payload of {len(payload)} bytes, expected 4 (rfc 4733 §2.3)"
        )
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(_EVENT_DIGITS):
        return None
    return TelephoneEvent(_EVENT_DIGITS[event], bool(flags & 0x80), duration)


@dataclass(frozen=True)
class AudioOffer:
    """What an SDP offer's audio stream asks for.

    Attributes:
        address: the connection address (``c=`` line) to send RTP to.
        port: the RTP port (``m=audio``); 0 means the stream is rejected.
        payload_types: the offered payload types, in order.
        event_payload_type: telephone-event/8000's payload type, or None.
        direction: ``sendrecv``, ``sendonly``, ``recvonly`` or ``inactive``.
    """

    address: str
    port: int
    payload_types: tuple[int, ...]
    event_payload_type: int | None
    direction: str

    @property
    def on_hold(self) -> bool:
        """The caller holds the call (RFC 3264 §8.4: sendonly/inactive, or 0.0.0.0)."""
        return self.direction in ("sendonly", "inactive") or self.address == "0.0.0.0"


def parse_offer(sdp: bytes) -> AudioOffer:
    """The first audio stream of an SDP offer.

    Raises:
        ProtocolError: no ``c=`` or ``m=audio`` line, or a bad port (rfc 4566 §5).
    """
    address = ""
    port = -1
    payload_types: tuple[int, ...] = ()
    event_pt: int | None = None
    direction = "sendrecv"
    in_audio = False
    for raw in sdp.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if port >= 0:
                break  # the first audio stream only
            fields = line[2:].split()
            in_audio = bool(fields) and fields[0] == "audio"
            if in_audio:
                if len(fields) < 4 or not fields[1].split("/")[0].isdigit():
                    raise ProtocolError(
                        f"sdp media line {line[:40]!r} is malformed (rfc 4566 §5.14)"
                    )
                port = int(fields[1].split("/")[0])
                payload_types = tuple(int(f) for f in fields[3:] if f.isdigit())
        elif line.startswith("c=") and (in_audio or not address):
            parts = line[2:].split()
            if len(parts) == 3:
                address = parts[2].split("/")[0]
        elif in_audio and line.startswith("a=rtpmap:"):
            number, _, codec = line[9:].partition(" ")
            if codec.lower().startswith("telephone-event/8000") and number.isdigit():
                event_pt = int(number)
        elif in_audio and line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
            direction = line[2:]
    if port < 0 or not address:
        raise ProtocolError(
            "sdp offer has no audio stream with a connection address (rfc 4566 §5.7)"
        )
    if not 0 <= port <= 65535:
        raise ProtocolError(f"sdp audio port {port} is outside 0-65535 (rfc 4566 §5.14)")
    return AudioOffer(address, port, payload_types, event_pt, direction)


def answer_sdp(
    offer: AudioOffer, address: str, port: int, session_id: int, version: int
) -> bytes | None:
    """The SDP answer: PCMU and telephone-event at ``address:port`` (rule 3).

    Returns None when the offer has no PCMU (the INVITE then gets 488, RFC 3261 §21.4.26).
    """
    if PCMU not in offer.payload_types:
        return None
    formats = [str(PCMU)]
    lines_extra = ["a=rtpmap:0 PCMU/8000"]
    if offer.event_payload_type is not None:
        pt = offer.event_payload_type
        formats.append(str(pt))
        lines_extra += [f"a=rtpmap:{pt} telephone-event/8000", f"a=fmtp:{pt} 0-15"]
    # RFC 3264 §6.1: a sendonly offer is answered recvonly; inactive with inactive.
    reply = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
    lines = [
        "v=0",
        f"o=voicerail {session_id} {version} IN IP4 {address}",
        "s=voicerail",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(formats)}",
        *lines_extra,
        "a=ptime:20",
        f"a={reply.get(offer.direction, 'sendrecv')}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
