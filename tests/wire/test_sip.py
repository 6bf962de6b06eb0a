"""SIP message parsing and serialization (RFC 3261), without I/O."""

from __future__ import annotations

import pytest

from voicerail.wire import sip

INVITE = (
    b"INVITE sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
    b"f: <sip:caller@127.0.0.1:5070>;tag=abc\r\n"
    b"To: <sip:agent@127.0.0.1:5060>\r\n"
    b"i: call-1@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Subject: folded\r\n  line\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\nEXTRA"
)


def test_a_request_parses_with_compact_forms_folding_and_its_declared_body() -> None:
    message = sip.parse(INVITE)
    assert message.method == "INVITE" and message.uri == "sip:agent@127.0.0.1:5060"
    assert message.call_id == "call-1@127.0.0.1"
    assert message.header("FROM") == "<sip:caller@127.0.0.1:5070>;tag=abc"
    assert message.header("subject") == "folded line"
    assert message.cseq == (1, "INVITE")
    assert message.body == b"v=0\n"


def test_a_response_round_trips_through_serialize() -> None:
    request = sip.parse(INVITE)
    response = sip.response_to(request.headers, 180, "Ringing", to_tag="t1")
    parsed = sip.parse(response.serialize())
    assert (parsed.status, parsed.reason) == (180, "Ringing")
    assert parsed.header("to") == "<sip:agent@127.0.0.1:5060>;tag=t1"
    assert parsed.header("call-id") == "call-1@127.0.0.1"
    assert parsed.header("content-length") == "0"


@pytest.mark.parametrize(
    ("datagram", "error"),
    [
        (b"HELLO\r\n\r\n", "request line 'HELLO' is not 'METHOD uri SIP/2.0' (§7.1)"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "status code 99 is outside 100-699 (§7.2)"),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"), "cseq 'x INVITE' is not"),
        (INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match request method"),
        (INVITE.replace(b"i: call-1@127.0.0.1\r\n", b""), "missing required header 'Call-ID'"),
        (INVITE.replace(b"Content-Length: 4", b"Content-Length: 400"), "exceeds the 9 body"),
        (INVITE.replace(b"Subject: folded", b"Bad Header folded"), "has no 'name: value' form"),
    ],
)
def test_malformed_messages_name_the_rfc_section_and_keep_what_was_read(
    datagram: bytes, error: str
) -> None:
    with pytest.raises(sip.MalformedMessage) as info:
        sip.parse(datagram)
    assert error in info.value.message
    if b"Via" in datagram and info.value.is_request:
        assert info.value.headers["via"] == ["SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"]


def test_header_helpers_read_params_and_uris() -> None:
    assert sip.header_param("<sip:a@h>;tag=x;foo", "tag") == "x"
    assert sip.header_param("<sip:a@h>", "tag") is None
    assert sip.uri_of('"Bob" <sip:bob@h:5>;tag=1') == "sip:bob@h:5"
    assert sip.uri_of("sip:bob@h;tag=1") == "sip:bob@h"
