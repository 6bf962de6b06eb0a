"""Access to the dashboard, the REST API and the metrics: an API key or a login.

Rules:

1. With neither an API key nor a password configured, nothing is checked; the
   server then binds to loopback by default (``voicerail serve --host 127.0.0.1``)
   and :func:`exposure_warning` says so when it is asked to bind elsewhere.
2. When configured, every request under a protected prefix (``/dashboard``,
   ``/api``, ``/metrics``) needs ``Authorization: Bearer <api key>``,
   ``X-API-Key: <api key>``, or the session cookie that ``POST /login`` sets.
   Telephony webhooks and media streams are not protected here: Twilio signs them.
3. Refusals: API and metrics requests get 401 with ``WWW-Authenticate: Bearer``;
   dashboard pages and the browser call page (``/call``, when served) redirect
   to ``/login``; a WebSocket is closed with 1008.
4. The session cookie is ``<expiry>.<HMAC-SHA256>`` keyed by the configured
   secrets, so changing the key or password ends every session. Comparisons are
   constant-time (``hmac.compare_digest``).
5. ``POST /login`` is throttled per client address and for the account
   (``server/login_throttle.py``): a locked-out attempt gets 429 with
   ``Retry-After`` and its secret is not checked. Behind a proxy every client
   has the proxy's address, and the per-client limit acts as a second account limit.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from voicerail.server.login_throttle import LoginThrottle

COOKIE = "voicerail_session"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class AccessSettings:
    """Who may see operations data.

    Attributes:
        api_key: the key API clients send (``$VOICERAIL_API_KEY``).
        password: a dashboard login password (``$VOICERAIL_DASHBOARD_PASSWORD``);
            the login form also takes the API key.
        session_ttl_s: how long a login lasts.
        protected_prefixes: paths that need access.
    """

    api_key: str | None = None
    password: str | None = None
    session_ttl_s: float = 12 * 3600.0
    protected_prefixes: tuple[str, ...] = ("/dashboard", "/api", "/metrics")

    @property
    def enabled(self) -> bool:
        """True when a key or a password is configured (rule 1)."""
        return bool(self.api_key or self.password)

    def protects(self, path: str) -> bool:
        """True when ``path`` needs access."""
        return self.enabled and any(
            path == p or path.startswith(p + "/") for p in self.protected_prefixes
        )

    def _signing_key(self) -> bytes:
        material = f"voicerail-session\0{self.api_key or ''}\0{self.password or ''}"
        return hashlib.sha256(material.encode()).digest()

    def session_cookie(self, now_s: float) -> str:
        """A session cookie value valid until ``now_s + session_ttl_s`` (rule 4)."""
        expiry = str(int(now_s + self.session_ttl_s))
        mac = hmac.new(self._signing_key(), expiry.encode(), hashlib.sha256).hexdigest()
        return f"{expiry}.{mac}"

    def valid_cookie(self, value: str, now_s: float) -> bool:
        """True for an unexpired cookie this configuration signed."""
        expiry, _, mac = value.partition(".")
        if not expiry.isdigit() or int(expiry) <= now_s:
            return False
        expected = hmac.new(self._signing_key(), expiry.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, expected)

    def valid_secret(self, secret: str) -> bool:
        """True when ``secret`` is the API key or the password."""
        candidates = [s for s in (self.api_key, self.password) if s]
        return any(hmac.compare_digest(secret.encode(), c.encode()) for c in candidates)


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def exposure_warning(host: str, access: AccessSettings) -> str | None:
    """A warning when operations data would be served beyond loopback without access."""
    if is_loopback(host) or access.enabled:
        return None
    return (
        f"serving on {host} without an API key: the dashboard and API show call data to "
        "anyone who can reach it; set VOICERAIL_API_KEY or bind to 127.0.0.1"
    )


class AccessMiddleware:
    """Pure ASGI middleware enforcing rules 2 and 3.

    Args:
        app: the wrapped application.
        access: the settings.
        now: wall clock, seconds (tests pass a fake one).
    """

    def __init__(
        self, app: ASGIApp, access: AccessSettings, now: Callable[[], float] = time.time
    ) -> None:
        self.app = app
        self.access = access
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.access.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        response: Response
        if _is_page(scope["path"]) and scope["method"] in ("GET", "HEAD"):
            target = scope["path"]
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        else:
            response = JSONResponse(
                {"error": "an API key is required (Authorization: Bearer <key>)"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="voicerail"'},
            )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        authorization = headers.get("authorization", "")
        api_key = (self.access.api_key or "").encode()
        offered = [headers.get("x-api-key", "")]
        if authorization.lower().startswith("bearer "):
            offered.append(authorization[7:].strip())
        if api_key and any(hmac.compare_digest(k.encode(), api_key) for k in offered if k):
            return True
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no session
            return False
        morsel = cookies.get(COOKIE)
        return morsel is not None and self.access.valid_cookie(morsel.value, self.now())


def _is_page(path: str) -> bool:
    """A page a person opens (redirected to the login), not an API or metrics path."""
    return any(path == p or path.startswith(p + "/") for p in ("/dashboard", "/call"))


def _login_page(next_path: str, error: str = "") -> str:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>voicerail · sign in</title>
<style>body{{font:15px system-ui,sans-serif;display:grid;place-items:center;height:90vh}}
form{{display:grid;gap:.6em;width:18em}}.error{{color:#b91c1c}}</style></head><body>
<form method="post" action="/login"><h1>voicerail</h1>{message}
<label>API key or password <input type="password" name="secret" autofocus required></label>
<input type="hidden" name="next" value="{html.escape(next_path)}">
<button type="submit">Sign in</button></form></body></html>"""


def _safe_next(value: str | None) -> str:
    """Only local paths: an open redirect would hand the session to another site."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/dashboard"
    return value


def login_routes(
    access: AccessSettings,
    now: Callable[[], float] = time.time,
    throttle: LoginThrottle | None = None,
) -> list[Route]:
    """``GET/POST /login`` and ``POST /logout``.

    Args:
        access: the settings.
        now: wall clock, seconds (tests pass a fake one).
        throttle: failed-login limits (rule 5); defaults to :class:`LoginThrottle`'s.
    """
    throttle = throttle or LoginThrottle()

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_login_page(_safe_next(request.query_params.get("next"))))
        client = request.client.host if request.client else "unknown"
        form = await request.form()
        next_path = _safe_next(str(form.get("next") or ""))
        wait_s = throttle.retry_after_s(client, now())
        if wait_s is not None:
            seconds = math.ceil(wait_s)
            return HTMLResponse(
                _login_page(next_path, f"too many failed sign-ins; try again in {seconds} s"),
                status_code=429,
                headers={"Retry-After": str(seconds)},
            )
        if not access.valid_secret(str(form.get("secret") or "")):
            throttle.record_failure(client, now())
            return HTMLResponse(_login_page(next_path, "wrong key or password"), status_code=401)
        throttle.record_success(client)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            access.session_cookie(now()),
            max_age=int(access.session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
