"""Telnyx Ed25519 webhook signatures: good, tampered, old, missing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from voicerail.errors import ConfigError, ProtocolError
from voicerail.wire.telnyx_webhook import load_public_key, verify_signature

PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_B64 = base64.b64encode(
    PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()
BODY = b"CallSid=v3%3Aabc&From=%2B15550100"


def sign(timestamp: str, body: bytes = BODY) -> str:
    return base64.b64encode(PRIVATE.sign(timestamp.encode() + b"|" + body)).decode()


def test_a_signed_request_verifies():
    verify_signature(load_public_key(PUBLIC_B64), BODY, sign("1000"), "1000", 1010.0)


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "now", "message"),
    [
        (BODY + b"x", sign("1000"), "1000", 1000.0, "does not match"),
        (BODY, sign("1000"), "1001", 1001.0, "does not match"),
        (BODY, sign("1000"), "1000", 1400.0, "400 s off the clock"),
        (BODY, None, "1000", 1000.0, "missing"),
        (BODY, "%%%", "1000", 1000.0, "not base64"),
        (BODY, sign("1000"), "abc", 1000.0, "not unix seconds"),
    ],
)
def test_bad_requests_are_refused(body, signature, timestamp, now, message):
    with pytest.raises(ProtocolError, match=message):
        verify_signature(load_public_key(PUBLIC_B64), body, signature, timestamp, now)


def test_a_malformed_key_is_a_config_error():
    with pytest.raises(ConfigError, match="32 bytes"):
        load_public_key("AAAA")
