"""SIP messages (RFC 3261): parse a UDP datagram into a request or a response,
serialize one back. No I/O, no dialog state (``wire/sip_dialog.py`` keeps that).

Rules:

1. One datagram is one message (RFC 3261 §18.3: over UDP the body ends where the
   datagram ends, and Content-Length, when present, must not exceed it).
2. A message that breaks the grammar raises :class:`~voicerail.errors.ProtocolError`
   naming the section it breaks; what could still be read (Via, Call-ID, CSeq)
   is kept on :class:`MalformedMessage` so that the answer is a 400 for that
   dialog only (§8.2.2, §21.4.1).
3. Header names are case-insensitive and compact forms (§7.3.3) are expanded on
   parse; a header that repeats keeps every value in order (§7.3.1).

Source: RFC 3261 (https://www.rfc-editor.org/rfc/rfc3261, read 2026-12).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicerail.errors import ProtocolError

#: A datagram larger than this is refused (RFC 3261 §18.1.1: a message near the
#: path MTU goes over TCP; 64 KiB is the UDP maximum).
MAX_DATAGRAM_NUM_BYTES = 65_507

# RFC 3261 §7.3.3 compact forms (and RFC 3515 §7 for Refer-To "r").
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
}
_REQUIRED = ("via", "call-id", "cseq", "from", "to")  # §8.1.1 (Max-Forwards: lenient)


class MalformedMessage(ProtocolError):
    """A datagram that is not a valid SIP message (the peer's fault).

    Attributes:
        headers: the headers that could be read (lowercase names), for a 400.
        is_request: True when the start line looked like a request.
    """

    def __init__(
        self, message: str, *, headers: dict[str, list[str]] | None = None, is_request: bool = False
    ) -> None:
        super().__init__(message, event="sip")
        self.headers = headers or {}
        self.is_request = is_request


@dataclass
class SipMessage:
    """A SIP request (``method`` set) or response (``status`` set).

    Attributes:
        method: request method (``INVITE``…), or ``""`` for a response.
        uri: request URI, or ``""``.
        status: response status code, or 0 for a request.
        reason: response reason phrase.
        headers: lowercase full name -> values in order.
        body: the body bytes (SDP for INVITE/200).
    """

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def call_id(self) -> str:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) of the CSeq header (§8.1.1.5)."""
        number, _, method = self.header("cseq").partition(" ")
        return int(number), method.strip()

    def add(self, name: str, value: str) -> None:
        self.headers.setdefault(name.lower(), []).append(value)

    def serialize(self) -> bytes:
        """The message as a datagram; Content-Length is set from the body (§20.14)."""
        if self.is_request:
            lines = [f"{self.method} {self.uri} SIP/2.0"]
        else:
            lines = [f"SIP/2.0 {self.status} {self.reason}"]
        for name, values in self.headers.items():
            if name == "content-length":
                continue
            title = _title(name)
            lines.extend(f"{title}: {value}" for value in values)
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _title(name: str) -> str:
    special = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate"}
    return special.get(name, "-".join(part.capitalize() for part in name.split("-")))


def parse(datagram: bytes) -> SipMessage:
    """Parse one datagram (rule 1).

    Raises:
        MalformedMessage: the start line, a header, a required header, CSeq or
            Content-Length breaks RFC 3261 (the message names the section).
    """
    if len(datagram) > MAX_DATAGRAM_NUM_BYTES:
        raise MalformedMessage(f"datagram of {len(datagram)} bytes exceeds the udp maximum")
    head, sep, body = datagram.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = datagram.partition(b"\n\n")  # §7.5: be lenient with bare LF
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"header bytes are not utf-8 at offset {exc.start} (§7.3)") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    looks_like_request = not start.startswith("SIP/")
    message = SipMessage()
    current: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and current is not None:  # §7.3.1 folded line
            message.headers[current][-1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or " " in name:
            raise MalformedMessage(
                f"header line {line[:40]!r} has no 'name: value' form (§7.3.1)",
                headers=message.headers,
                is_request=looks_like_request,
            )
        current = _COMPACT.get(name, name)
        message.add(current, value.strip())
    try:
        first = _start_line(start)
    except MalformedMessage as exc:
        exc.headers = message.headers  # rule 2: what was read answers the 400
        raise
    first.headers = message.headers
    message = first
    if not sep and not message.headers:
        raise MalformedMessage("no header section (§7)", is_request=message.is_request)
    _check(message)
    message.body = _body(message, body)
    return message


def _start_line(start: str) -> SipMessage:
    parts = start.split(" ", 2)
    if start.startswith("SIP/"):
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
            raise MalformedMessage(
                f"status line {start[:40]!r} is not 'SIP/2.0 code reason' (§7.2)"
            )
        status = int(parts[1])
        if not 100 <= status <= 699:
            raise MalformedMessage(f"status code {status} is outside 100-699 (§7.2)")
        return SipMessage(status=status, reason=parts[2] if len(parts) > 2 else "")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha() or not parts[1]:
        raise MalformedMessage(
            f"request line {start[:40]!r} is not 'METHOD uri SIP/2.0' (§7.1)", is_request=True
        )
    return SipMessage(method=parts[0].upper(), uri=parts[1])


def _check(message: SipMessage) -> None:
    for name in _REQUIRED:
        if name not in message.headers:
            raise MalformedMessage(
                f"missing required header {_title(name)!r} (§8.1.1)",
                headers=message.headers,
                is_request=message.is_request,
            )
    number, _, method = message.header("cseq").partition(" ")
    if not number.isdigit() or len(number) > 10 or not method.strip():
        raise MalformedMessage(
            f"cseq {message.header('cseq')[:40]!r} is not 'number METHOD' (§20.16)",
            headers=message.headers,
            is_request=message.is_request,
        )
    if message.is_request and method.strip().upper() != message.method:
        raise MalformedMessage(
            f"cseq method {method.strip()!r} does not match request method "
            f"{message.method!r} (§8.1.1.5)",
            headers=message.headers,
            is_request=True,
        )


def _body(message: SipMessage, body: bytes) -> bytes:
    declared = message.header("content-length")
    if not declared:
        return body
    if not declared.isdigit():
        raise MalformedMessage(
            f"content-length {declared[:20]!r} is not a number (§20.14)",
            headers=message.headers,
            is_request=message.is_request,
        )
    num_bytes = int(declared)
    if num_bytes > len(body):
        raise MalformedMessage(
            f"content-length {num_bytes} exceeds the {len(body)} body bytes received (§18.3)",
            headers=message.headers,
            is_request=message.is_request,
        )
    return body[:num_bytes]


def response_to(
    request_headers: dict[str, list[str]], status: int, reason: str, *, to_tag: str | None = None
) -> SipMessage:
    """A response copying Via, From, To, Call-ID and CSeq from a request (§8.2.6.2).

    Args:
        request_headers: the request's headers (lowercase names).
        status: 100-699.
        reason: the reason phrase.
        to_tag: added to To when it has no tag yet (a dialog's local tag, §8.2.6.2).
    """
    response = SipMessage(status=status, reason=reason)
    for name in ("via", "from", "to", "call-id", "cseq"):
        for value in request_headers.get(name, []):
            if name == "to" and to_tag and ";tag=" not in value.replace(" ", ""):
                value = f"{value};tag={to_tag}"
            response.add(name, value)
    return response


def header_param(value: str, name: str) -> str | None:
    """The value of ``;name=`` in a header value (``tag``, ``branch``), or None."""
    for part in value.split(";")[1:]:
        key, _, param = part.partition("=")
        if key.strip().lower() == name:
            return param.strip()
    return None


def uri_of(value: str) -> str:
    """The URI inside a name-addr (``"Bob" <sip:bob@h>;tag=x`` -> ``sip:bob@h``)."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";", 1)[0].strip()
