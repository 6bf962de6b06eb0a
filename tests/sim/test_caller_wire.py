"""Each simulated provider speaks to its server protocol: the caller wire's frames
parse as the right transport events, and what the server sends parses back."""

from __future__ import annotations

from typing import Any

import pytest

from voicerail.audio.g711 import ulaw_to_pcm16
from voicerail.sim.caller_wire import (
    AgentAudio,
    AgentClear,
    AgentMark,
    PlivoCallerWire,
    TelnyxCallerWire,
    TwilioCallerWire,
    VonageCallerWire,
)
from voicerail.wire.plivo import PlivoStreamProtocol
from voicerail.wire.telnyx import TelnyxStreamProtocol
from voicerail.wire.transport import (
    AudioReceived,
    CallAnswered,
    CallHungUp,
    DigitPressed,
    PlaybackMarked,
)
from voicerail.wire.twilio_transport import TwilioTransport
from voicerail.wire.vonage import VonageSocketProtocol

ULAW = bytes((i * 7) % 256 for i in range(160))

PAIRS: dict[str, tuple[Any, Any]] = {
    "twilio": (lambda: TwilioCallerWire("CA1", "MZ1", {"from": "+1555"}), TwilioTransport),
    "telnyx": (lambda: TelnyxCallerWire("v3:1", "s-1", {"from": "+1555"}), TelnyxStreamProtocol),
    "plivo": (lambda: PlivoCallerWire("c-1", "s-1", "from=1555"), PlivoStreamProtocol),
    "vonage": (
        lambda: VonageCallerWire({"call_uuid": "u-1", "from": "1555"}),
        VonageSocketProtocol,
    ),
}


@pytest.mark.parametrize("provider", sorted(PAIRS))
def test_a_call_round_trips_between_the_caller_wire_and_the_server_protocol(provider):
    make_wire, make_server = PAIRS[provider]
    wire, server = make_wire(), make_server()
    for frame in wire.opening():
        server.receive_data(frame)
    server.receive_data(wire.media(ULAW, 1))
    server.receive_data(wire.dtmf("7"))
    answered, audio, digit = server.events_received()
    assert isinstance(answered, CallAnswered) and answered.caller.endswith("1555")
    assert audio == AudioReceived(ulaw_to_pcm16(ULAW)) and digit == DigitPressed("7")

    server.send_audio(ULAW)
    server.send_mark("r1.s0")
    server.send_clear()
    got = [wire.parse(frame) for frame in server.data_to_send()]
    audio_out = b"".join(m.ulaw for m in got if isinstance(m, AgentAudio))
    assert audio_out[:160] == ULAW or provider == "vonage"  # vonage: L16 and back
    assert len(audio_out) == 160
    assert [m for m in got if not isinstance(m, AgentAudio)] == [AgentMark("r1.s0"), AgentClear()]

    server.receive_data(wire.mark_played("r1.s0"))
    assert server.events_received() == [PlaybackMarked("r1.s0")]
    for frame in wire.cleared():
        server.receive_data(frame)
    hangup = wire.hangup()
    if hangup is not None:
        server.receive_data(hangup)
        assert server.events_received() == [CallHungUp()]
    assert wire.echoes_marks_on_clear is (provider in ("twilio", "telnyx"))
