"""The simulated Twilio reads TwiML as Twilio does (sim/twiml.py)."""

from __future__ import annotations

import pytest

from voicerail.sim.twiml import call_form, parse_twiml, websocket_url

CONNECT = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="/twilio/connect-action">'
    '<Stream url="wss://127.0.0.1:8080/twilio/media"><Parameter name="callsid" value="CA1" />'
    '<Parameter name="resume" value="2" /></Stream></Connect></Response>'
)


def test_a_connect_stream_gives_the_stream_its_parameters_and_the_absolute_action():
    answer = parse_twiml(CONNECT, "http://127.0.0.1:8080/twilio/voice")
    assert answer.stream is not None and answer.verbs == ("Connect",)
    assert answer.stream.url == "ws://127.0.0.1:8080/twilio/media"  # plain-HTTP test server
    assert answer.stream.parameters == {"callsid": "CA1", "resume": "2"}
    assert answer.stream.action == "http://127.0.0.1:8080/twilio/connect-action"


def test_over_https_the_stream_stays_wss():
    assert websocket_url("wss://h/m", "https://h/twilio/voice") == "wss://h/m"


def test_hangup_dial_or_a_refusal_open_no_stream():
    answer = parse_twiml("<Response><Say>Busy</Say><Hangup/></Response>", "http://h/v")
    assert answer.stream is None and answer.summary == "Say + Hangup"
    assert parse_twiml("<Response><Dial>+1555</Dial></Response>", "http://h/v").stream is None


def test_what_is_not_twiml_is_refused():
    with pytest.raises(ValueError, match="not xml"):
        parse_twiml("busy", "http://h/v")
    with pytest.raises(ValueError, match="expected 'Response'"):
        parse_twiml("<html/>", "http://h/v")


def test_the_action_request_carries_twilios_fields():
    form = call_form("CA1", status="in-progress", caller="+15550100", called="+15550199")
    assert form["CallSid"] == "CA1" and form["CallStatus"] == "in-progress"
    assert form["AccountSid"].startswith("AC") and form["Direction"] == "inbound"
