"""Behind a reverse proxy: the URL the client asked for, and who the client is.

Twilio signs the full URL it requested, scheme, host, path and query
(https://www.twilio.com/docs/usage/webhooks/webhooks-security, read 2026-12); behind
a proxy that terminates TLS the server sees ``http://127.0.0.1:8080/…`` instead, and
every signature fails. Twilio's advice ("Fixing Twilio Request Validation 403 Errors
Behind a Proxy", support.twilio.com) is to validate against the URL Twilio used:
either configured, or rebuilt from the proxy's ``X-Forwarded-Proto`` and host.

Rules:

1. Nothing in ``X-Forwarded-*`` is believed by default: any client can send them.
   (uvicorn's own proxy support believes them from 127.0.0.1 by default;
   ``voicerail serve`` turns it off so this module is the only rule.)
2. ``--public-url`` wins: when set, it is the base of every signed URL and of the
   stream URL handed to Twilio, whatever the headers say (``server/app.py``).
3. ``--forwarded-allow-ips``: the headers are believed only when the peer (the
   TCP connection's address) is one of these addresses or networks (``*``: any).
   Then ``X-Forwarded-Proto`` sets the scheme, ``X-Forwarded-Host`` the host, and
   ``X-Forwarded-For`` the client: its rightmost address that is not itself a
   trusted proxy (the addresses to its left were written by the client and are
   not evidence). Of ``Proto`` and ``Host`` the last value is taken, the one the
   nearest proxy wrote.
4. A header that is malformed (a scheme other than http/https, an empty host) is
   ignored, not half-applied.

:func:`forwarded_view` is the pure rule; :class:`ForwardedHeadersMiddleware` applies
it to each ASGI scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from voicerail.errors import ConfigError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """The peers whose ``X-Forwarded-*`` headers are believed (rule 3).

    Attributes:
        networks: addresses as one-address networks, and networks.
        any_peer: ``*`` was given: every peer is trusted (only for a server that
            nothing but the proxy can reach).
    """

    networks: tuple[_Network, ...] = ()
    any_peer: bool = False

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """``"127.0.0.1, 10.0.0.0/8"`` or ``"*"``.

        Raises:
            ConfigError: an entry is neither an IP address nor a network
                (source ``--forwarded-allow-ips``).
        """
        entries = [e.strip() for e in text.split(",") if e.strip()]
        if "*" in entries:
            return cls(any_peer=True)
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"expected an IP address or network, got {entry!r}",
                    source="--forwarded-allow-ips",
                ) from None
        return cls(networks=tuple(networks))

    def __bool__(self) -> bool:
        return self.any_peer or bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (an IP address; None or a Unix socket path: no) is trusted."""
        if self.any_peer:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


@dataclass(frozen=True)
class ForwardedView:
    """What a trusted proxy says about the request; None where it said nothing usable.

    Attributes:
        scheme: ``http`` or ``https``.
        host: the host (and port) the client asked for.
        client: the client's IP address.
    """

    scheme: str | None = None
    host: str | None = None
    client: str | None = None


def forwarded_view(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies
) -> ForwardedView:
    """Rule 3 and 4: what to believe of ``headers`` from ``peer``.

    Args:
        peer: the TCP peer's IP address (the ASGI scope's ``client[0]``).
        headers: the request's raw headers (ASGI: lowercase names, latin-1 bytes).
        trusted: the proxies to believe.

    Returns:
        An empty view when ``peer`` is not trusted.
    """
    if not trusted.trusts(peer):
        return ForwardedView()
    values: dict[bytes, list[str]] = {}
    for name, value in headers:
        if name in (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for"):
            values.setdefault(name, []).extend(_split(value))
    protos = values.get(b"x-forwarded-proto", [])
    scheme = protos[-1].lower() if protos else None
    hosts = values.get(b"x-forwarded-host", [])
    host = hosts[-1] if hosts else None
    return ForwardedView(
        scheme=scheme if scheme in ("http", "https") else None,
        host=host if host and _plausible_host(host) else None,
        client=_client(values.get(b"x-forwarded-for", []), trusted),
    )


def _split(value: bytes) -> list[str]:
    return [part.strip() for part in value.decode("latin-1").split(",") if part.strip()]


def _plausible_host(host: str) -> bool:
    # A host header's characters (RFC 3986 reg-name, IPv6 literal, port): no
    # spaces, slashes or '@' that would change what a rebuilt URL means.
    return all(c.isalnum() or c in "-._:[]" for c in host)


def _client(chain: Sequence[str], trusted: TrustedProxies) -> str | None:
    """The rightmost address of ``chain`` that is not a trusted proxy (with ``*``,
    every hop is trusted: the leftmost)."""
    if trusted.any_peer:
        return chain[0] if chain else None
    for address in reversed(chain):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return None  # a garbled hop: nothing to its left can be placed
        if not trusted.trusts(address):
            return address
    return chain[0] if chain else None


class ForwardedHeadersMiddleware:
    """ASGI middleware: rewrites a trusted proxy's requests as the client made them.

    The scope's ``scheme`` (``http``→``https``, ``ws``→``wss``), its ``host``
    header and its ``client`` follow :func:`forwarded_view`, so ``request.url``
    is the URL Twilio signed and ``request.client`` the caller's address.

    Args:
        app: the wrapped ASGI app.
        trusted: the proxies to believe.
    """

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            view = forwarded_view(client[0] if client else None, scope["headers"], self.trusted)
            if view.scheme is not None:
                secure = view.scheme == "https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = view.scheme
            if view.host is not None:
                host = view.host.encode("latin-1")
                others = [(k, v) for k, v in scope["headers"] if k != b"host"]
                scope["headers"] = [(b"host", host), *others]
            if view.client is not None:
                scope["client"] = (view.client, 0)
        await self.app(scope, receive, send)
