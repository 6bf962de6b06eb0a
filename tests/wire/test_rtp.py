"""RTP packing (RFC 3550), telephone events (RFC 4733) and the SDP answer."""

from __future__ import annotations

import struct

import pytest

from voicerail.errors import ProtocolError
from voicerail.wire import rtp

OFFER = (
    b"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def test_a_packet_round_trips() -> None:
    packet = rtp.RtpPacket(0, 65535, 2**32 - 1, 7, b"\xff" * 160, marker=True)
    assert rtp.parse_rtp(packet.serialize()) == packet


def test_padding_csrcs_and_extensions_are_skipped() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0, 1, 2, 3)
    csrc = b"\0\0\0\1"
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\0\0\0\0"
    packet = rtp.parse_rtp(header + csrc + extension + b"ab" + b"\0\x02")
    assert packet.payload == b"ab"


@pytest.mark.parametrize(
    ("datagram", "error"),
    [
        (b"\x80\x00", "shorter than 12"),
        (b"\x40" + b"\0" * 11, "rtp version 1, expected 2"),
        (b"\x90" + b"\0" * 11, "header extension runs past"),
        (b"\x8f" + b"\0" * 11, "runs past the 12-byte packet"),
    ],
)
def test_bad_packets_are_refused(datagram: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        rtp.parse_rtp(datagram)


def test_rtcp_is_recognised() -> None:
    assert rtp.is_rtcp(b"\x80\xc8" + b"\0" * 26)
    assert not rtp.is_rtcp(b"\x80\x00" + b"\0" * 10)


def test_telephone_events_read_digit_and_end_bit() -> None:
    assert rtp.parse_event(b"\x0b\x8a\x03\x20") == rtp.TelephoneEvent("#", True, 800)
    assert rtp.parse_event(b"\x05\x0a\x00\xa0") == rtp.TelephoneEvent("5", False, 160)
    assert rtp.parse_event(b"\x20\x80\x00\xa0") is None  # not a DTMF event
    with pytest.raises(ProtocolError, match="expected 4"):
        rtp.parse_event(b"\x01")


def test_the_answer_keeps_pcmu_and_the_offers_event_type() -> None:
    offer = rtp.parse_offer(OFFER)
    assert (offer.address, offer.port, offer.payload_types) == ("10.0.0.1", 4000, (8, 0, 101))
    assert offer.event_payload_type == 101 and not offer.on_hold
    answer = rtp.answer_sdp(offer, "127.0.0.1", 5000, 9, 2)
    assert answer is not None
    text = answer.decode()
    assert "m=audio 5000 RTP/AVP 0 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000" in text and "a=sendrecv" in text


def test_hold_is_answered_recvonly_and_an_offer_without_pcmu_gets_no_answer() -> None:
    held = rtp.parse_offer(OFFER.replace(b"a=sendrecv", b"a=sendonly"))
    assert held.on_hold
    answer = rtp.answer_sdp(held, "127.0.0.1", 5000, 9, 3)
    assert answer is not None and b"a=recvonly" in answer
    pcma_only = rtp.parse_offer(OFFER.replace(b"8 0 101", b"8"))
    assert rtp.answer_sdp(pcma_only, "127.0.0.1", 5000, 9, 1) is None


def test_an_offer_without_audio_is_refused() -> None:
    with pytest.raises(ProtocolError, match="no audio stream"):
        rtp.parse_offer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 96\r\n")
