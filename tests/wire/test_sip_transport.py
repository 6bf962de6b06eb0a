"""SipTransport: RTP in to transport events, queued audio out through the pacer."""

from __future__ import annotations

import pytest

from voicerail.errors import LocalProtocolError, ProtocolError
from voicerail.wire import rtp
from voicerail.wire.sip_transport import ANSWERED, HUNG_UP, PLAYED, SipTransport
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
)


def _answered() -> SipTransport:
    transport = SipTransport("call-1", "caller", event_payload_type=101, ssrc=5)
    transport.receive_data(ANSWERED)
    [answered] = transport.events_received()
    assert isinstance(answered, CallAnswered) and answered.call_ref == "call-1"
    return transport


def test_audio_before_the_answer_is_ignored_and_pcmu_after_it_becomes_pcm() -> None:
    transport = SipTransport("call-1")
    packet = rtp.RtpPacket(0, 1, 160, 9, b"\xff" * 160).serialize()
    transport.receive_data(packet)
    assert transport.events_received() == [] and not transport.sending
    transport.receive_data(ANSWERED)
    transport.receive_data(packet)
    events = transport.events_received()
    assert isinstance(events[1], AudioReceived) and len(events[1].pcm) == 320


def test_a_dtmf_event_is_one_digit_however_often_its_end_is_repeated() -> None:
    transport = _answered()
    for duration, flags in ((160, 0x0A), (320, 0x8A), (320, 0x8A), (320, 0x8A)):
        payload = bytes([5, flags]) + duration.to_bytes(2, "big")
        transport.receive_data(rtp.RtpPacket(101, duration, 8000, 9, payload).serialize())
    assert transport.events_received() == [DigitPressed("5")]


def test_rtcp_and_comfort_noise_are_ignored_and_bye_hangs_up() -> None:
    transport = _answered()
    transport.receive_data(b"\x80\xc9" + b"\0" * 6)
    transport.receive_data(rtp.RtpPacket(13, 1, 1, 1, b"\x40").serialize())
    transport.receive_data(HUNG_UP)
    assert transport.events_received() == [CallHungUp()]
    assert not transport.sending


def test_the_pacer_sends_a_frame_a_tick_and_echoes_marks_when_reached() -> None:
    transport = _answered()
    transport.send_audio(b"\x01" * 200)  # padded to two whole frames
    transport.send_mark("r1.s1")
    first, marked = transport.next_packet()
    assert first is not None and not marked
    packet = rtp.parse_rtp(first)
    assert packet.marker and packet.payload == b"\x01" * 160 and packet.ssrc == 5
    second, _ = transport.next_packet()
    assert second is not None
    following = rtp.parse_rtp(second)
    assert (following.sequence - packet.sequence) % 65536 == 1
    assert following.timestamp - packet.timestamp == 160 and not following.marker
    assert following.payload.endswith(b"\xff" * 120)
    assert transport.events_received() == []
    silent, marked = transport.next_packet()
    assert silent is None and marked
    transport.receive_data(PLAYED)
    assert transport.events_received() == [PlaybackMarked("r1.s1")]


def test_clear_drops_queued_audio_and_marks() -> None:
    transport = _answered()
    transport.send_audio(b"\x01" * 320)
    transport.send_mark("m")
    transport.send_clear()
    assert transport.next_packet() == (None, False)


def test_sending_outside_the_call_and_unknown_notes_are_refused() -> None:
    transport = SipTransport("call-1")
    with pytest.raises(LocalProtocolError, match="not answered"):
        transport.send_audio(b"\x01")
    with pytest.raises(ProtocolError, match="unknown sip endpoint note 'ring'"):
        transport.receive_data("ring")
    with pytest.raises(ProtocolError, match="shorter than 12"):
        transport.receive_data(b"\x80")
