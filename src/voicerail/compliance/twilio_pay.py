"""Twilio ``<Pay>``: the card captured by Twilio itself, for deployments that use it.

Source: Twilio, "TwiML Voice: <Pay>" (https://www.twilio.com/docs/voice/twiml/pay,
read 2026-12-06). ``<Pay>`` collects the card by DTMF inside Twilio and hands it to
the account's Pay Connector; with ``chargeAmount="0"`` it only *tokenizes*. When it
ends, Twilio POSTs the result to the ``action`` URL (``Result``, ``PaymentToken``,
``PaymentCardNumber`` masked to its last four, ``PaymentCardType``, ``PaymentError``)
and continues the call with the TwiML that URL returns. The card never reaches
voicerail at all, so this is the stronger PCI pause.

Rules:

1. :func:`pay_twiml` builds the ``<Pay>`` document a call is redirected to (a
   tokenize transaction); :func:`card_from_pay_action` reads the ``action``
   webhook's form into the same :class:`~voicerail.compliance.pci.CardToken` the
   local tokenizer returns, so the dialog hears the same thing either way.
2. The masked number is reduced to its last four digits; nothing else of it is kept.

Taking a live media-stream call to this TwiML and back to a new stream carrying
the same dialog is ``pay_http.py``'s. Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import quoteattr

from voicerail.compliance.pci import CardToken

#: ``Result`` values of the ``action`` webhook (Twilio's list).
PAY_RESULTS = frozenset(
    {
        "success",
        "payment-connector-error",
        "too-many-failed-attempts",
        "caller-interrupted-with-star",
        "caller-hung-up",
        "validation-error",
        "input-timeout",
    }
)


def pay_twiml(
    action_url: str,
    *,
    connector: str = "Default",
    token_type: str = "reusable",
    timeout_s: int = 5,
    max_attempts: int = 2,
    security_code: bool = False,
    postal_code: bool = False,
) -> str:
    """A TwiML document that tokenizes a card with ``<Pay>`` (rule 1).

    Args:
        action_url: where Twilio POSTs the result (https, POST only).
        connector: the Pay Connector's unique name on the account.
        token_type: ``reusable`` or ``one-time``.
        timeout_s: seconds Twilio waits for each key (Twilio's ``timeout``).
        max_attempts: tries per field, 1-3 (Twilio's ``maxAttempts``).
        security_code: ask for the CVV too.
        postal_code: ask for the billing postal code too.

    Raises:
        ValueError: ``token_type`` or ``max_attempts`` outside what Twilio accepts.
    """
    if token_type not in ("reusable", "one-time"):
        raise ValueError(f"token type must be reusable or one-time, got {token_type!r}")
    if not 1 <= max_attempts <= 3:
        raise ValueError(f"max attempts must be 1 to 3, got {max_attempts}")
    attrs = {
        "input": "dtmf",
        "action": action_url,
        "paymentConnector": connector,
        "chargeAmount": "0",
        "tokenType": token_type,
        "timeout": str(timeout_s),
        "maxAttempts": str(max_attempts),
        "securityCode": "true" if security_code else "false",
        "postalCode": "true" if postal_code else "false",
    }
    body = " ".join(f"{name}={quoteattr(value)}" for name, value in attrs.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Pay {body}/></Response>'


def card_from_pay_action(form: Mapping[str, str]) -> CardToken:
    """The ``action`` webhook's form as a :class:`CardToken` (rules 1 and 2).

    A result other than ``success`` is a refused card (no token).

    Raises:
        ValueError: ``Result`` is missing or not one of :data:`PAY_RESULTS`.
    """
    result = form.get("Result", "")
    if result not in PAY_RESULTS:
        raise ValueError(f"unknown <Pay> result {result!r}")
    digits = "".join(ch for ch in form.get("PaymentCardNumber", "") if ch.isdigit())
    last4 = digits[-4:]
    token = form.get("PaymentToken", "") if result == "success" else ""
    return CardToken(token=token, last4=last4, num_digits=0, luhn_ok=bool(token))
