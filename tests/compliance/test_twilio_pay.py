"""Twilio <Pay>: the tokenize TwiML and the action webhook read as a card token."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from voicerail.compliance.twilio_pay import card_from_pay_action, pay_twiml


def test_the_twiml_tokenizes_without_a_charge():
    root = ET.fromstring(pay_twiml("https://example.com/pay?x=1&y=2", connector="Stripe"))
    [pay] = list(root)
    assert pay.tag == "Pay"
    assert pay.attrib["chargeAmount"] == "0" and pay.attrib["paymentConnector"] == "Stripe"
    assert pay.attrib["action"] == "https://example.com/pay?x=1&y=2"
    assert pay.attrib["input"] == "dtmf" and pay.attrib["tokenType"] == "reusable"


@pytest.mark.parametrize("kwargs", [{"token_type": "forever"}, {"max_attempts": 4}])
def test_values_twilio_refuses_are_refused(kwargs):
    with pytest.raises(ValueError):
        pay_twiml("https://example.com/pay", **kwargs)


def test_a_successful_action_gives_the_token_and_only_the_last_four():
    card = card_from_pay_action(
        {"Result": "success", "PaymentToken": "tok_abc", "PaymentCardNumber": "xxxx-xxxx-xxxx-1111"}
    )
    assert card.accepted and card.token == "tok_abc" and card.last4 == "1111"


def test_a_failed_action_is_a_refused_card():
    card = card_from_pay_action({"Result": "too-many-failed-attempts", "PaymentToken": "x"})
    assert not card.accepted and card.token == ""


def test_an_unknown_result_is_an_error():
    with pytest.raises(ValueError, match="unknown <Pay> result"):
        card_from_pay_action({"Result": "maybe"})
