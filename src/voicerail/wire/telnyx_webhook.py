"""Telnyx webhook signatures (Ed25519), verified without I/O.

Telnyx signs every webhook with its account's Ed25519 key: the
``telnyx-signature-ed25519`` header is the base64 signature of
``f"{timestamp}|{body}"``, where ``timestamp`` is the ``telnyx-timestamp`` header
(Unix seconds) and ``body`` the raw request body; the public key is shown in the
Mission Control portal, base64
(https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks#webhook-signing,
read 2026-12). A timestamp older than the tolerance is refused, so that a captured
request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voicerail.errors import ConfigError, ProtocolError

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
#: How old a signed request may be, seconds (Telnyx's SDKs use 300).
TOLERANCE_S = 300.0


def load_public_key(public_key_b64: str) -> Ed25519PublicKey:
    """The account's public key from its base64 text (32 raw bytes).

    Raises:
        ConfigError: not base64, or not 32 bytes.
    """
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "telnyx public key must be 32 bytes in base64", field="telnyx_public_key"
        ) from None


def verify_signature(
    key: Ed25519PublicKey,
    body: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    now_wall_s: float,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Check one webhook request's signature and age.

    Args:
        key: the account's public key.
        body: the raw request body, as received.
        signature_b64: the ``telnyx-signature-ed25519`` header, or None.
        timestamp: the ``telnyx-timestamp`` header (Unix seconds), or None.
        now_wall_s: the wall clock, Unix seconds.
        tolerance_s: the largest accepted age (either direction), seconds.

    Raises:
        ProtocolError: a header is missing or malformed, the request is too old,
            or the signature does not match.
    """
    if not signature_b64 or not timestamp:
        raise ProtocolError("missing telnyx-signature-ed25519 or telnyx-timestamp header")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise ProtocolError("telnyx-timestamp is not unix seconds")
    age_s = now_wall_s - int(timestamp)
    if abs(age_s) > tolerance_s:
        raise ProtocolError(
            f"telnyx webhook timestamp is {age_s:.0f} s off the clock (limit {tolerance_s:.0f} s)"
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("telnyx-signature-ed25519 is not base64") from None
    try:
        key.verify(signature, timestamp.encode("ascii") + b"|" + body)
    except InvalidSignature:
        raise ProtocolError("telnyx webhook signature does not match") from None
