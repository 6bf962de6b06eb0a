"""The credentials a configuration uses: registry, expiry, and live checks.

Rules:

1. The registry lists credentials by name (``deepgram``, ``twilio``…), each with
   the environment variable that holds the secret, its kind, an optional
   configured expiry and an optional live check. It comes from a YAML file
   (:func:`load_registry`) merged over what the environment shows
   (:func:`discover`): a file entry replaces a discovered one of the same name.
2. Secrets are read from the environment when a check runs and never appear in
   messages, logs, URLs shown to people, or statuses.
3. A live check is one cheap authenticated request that spends no tokens or
   characters (list models, read the account). HTTP 401/403 means *refused*; other
   failures mean *unverified* (the provider may be down, the key may be fine).
   Where the provider's API tells a key's expiry, the check reads it; it then
   wins over the configured one.
4. A credential's state, from worst to best: ``missing`` (its variable is unset),
   ``refused``, ``expired``, ``expiring`` (within ``warn_before_s``, 30 days by
   default), ``unverified``, ``ok``, ``unchecked`` (no live check, no expiry issue).
5. At start-up (:func:`validate_at_startup`), ``missing``, ``refused`` and
   ``expired`` stop the server with a :class:`~voicerail.errors.CredentialError`
   that names the credential and its variable.

Provider endpoints (as documented, 2025): OpenAI ``GET /v1/models``
(https://platform.openai.com/docs/api-reference/models/list); Deepgram
``GET /v1/projects`` and ``GET /v1/projects/{project_id}/keys/{key_id}`` whose
key carries ``expiration_date`` (https://developers.deepgram.com/reference/manage/keys/get);
ElevenLabs ``GET /v1/user`` (``xi-api-key``); Cartesia ``GET /voices``;
Twilio ``GET /2010-04-01/Accounts/{AccountSid}.json`` with basic auth;
HubSpot ``GET /oauth/v1/access-tokens/{token}`` with ``expires_in``
(https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/get-oauth-token-metadata).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from voicerail.errors import ConfigError, CredentialError

DAY_S = 86400.0
WARN_BEFORE_S = 30 * DAY_S

KINDS = ("provider_api_key", "telephony_token", "crm_token", "other")


@dataclass(frozen=True)
class Credential:
    """One credential of the configuration (rule 1).

    Attributes:
        name: registry name, usually the provider's (``deepgram``).
        env: environment variable holding the secret.
        kind: one of :data:`KINDS`.
        expires_at: configured expiry, Unix seconds.
        check: live check preset (see :data:`CHECKS`), or None.
        options: the preset's options (``base_url``, ``account_sid_env``,
            ``project_id``, ``key_id``, ``url``, ``header``, ``scheme``, ``expires_field``).
    """

    name: str
    env: str
    kind: str = "provider_api_key"
    expires_at: float | None = None
    check: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """What one live check found (rule 3).

    Attributes:
        ok: True (accepted), False (refused, HTTP 401/403) or None (unverified).
        detail: what happened, without the secret.
        expires_at: the expiry the provider reported, Unix seconds.
    """

    ok: bool | None
    detail: str
    expires_at: float | None = None


@dataclass(frozen=True)
class CredentialStatus:
    """A credential's state at one moment (rule 4), safe to show and serialize."""

    name: str
    env: str
    kind: str
    state: str
    detail: str
    expires_at: float | None
    expires_source: str | None
    days_left: float | None
    checked_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


# -- the registry ----------------------------------------------------------------------

#: Environment variables the configuration reads, and what they are (rule 1).
KNOWN_ENV: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("openai", ("VOICERAIL_LLM_API_KEY", "OPENAI_API_KEY"), "provider_api_key", "openai"),
    ("deepgram", ("DEEPGRAM_API_KEY",), "provider_api_key", "deepgram"),
    ("elevenlabs", ("ELEVENLABS_API_KEY",), "provider_api_key", "elevenlabs"),
    ("cartesia", ("CARTESIA_API_KEY",), "provider_api_key", "cartesia"),
    ("twilio", ("TWILIO_AUTH_TOKEN",), "telephony_token", "twilio"),
    ("hubspot", ("HUBSPOT_ACCESS_TOKEN",), "crm_token", "hubspot"),
)


def discover(environ: Mapping[str, str] | None = None) -> list[Credential]:
    """Credentials whose well-known environment variable is set."""
    environ = os.environ if environ is None else environ
    found = []
    for name, variables, kind, check in KNOWN_ENV:
        env = next((v for v in variables if environ.get(v)), None)
        if env is None:
            continue
        options: dict[str, str] = {}
        if name == "openai" and environ.get("VOICERAIL_LLM_BASE_URL"):
            options["base_url"] = environ["VOICERAIL_LLM_BASE_URL"]
        found.append(Credential(name, env, kind, check=check, options=options))
    return found


def parse_expiry(value: Any, *, source: str = "<credentials>", name: str = "") -> float | None:
    """A configured expiry: ISO date or datetime (UTC unless it says), or Unix seconds.

    Raises:
        ConfigError: anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"expected an ISO date, got {value!r}", source=source, field=f"{name}.expires"
            ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def load_registry(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> list[Credential]:
    """The registry: a credentials file merged over :func:`discover` (rule 1).

    The file is YAML: ``credentials: {name: {env, kind, expires, check, options}}``.
    A file entry needs ``env``; ``check`` defaults to the name when it is a preset.

    Raises:
        ConfigError: unreadable file, or a bad entry (names the file and field).
    """
    import yaml

    registry = {c.name: c for c in discover(environ)}
    if path is None:
        return list(registry.values())
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read credentials: {exc}", source=source) from exc
    entries = raw.get("credentials", {}) if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError("expected a 'credentials' mapping", source=source, field="credentials")
    for name, entry in entries.items():
        registry[str(name)] = _entry(str(name), entry, source)
    return list(registry.values())


def _entry(name: str, entry: Any, source: str) -> Credential:
    if not isinstance(entry, dict) or not entry.get("env"):
        raise ConfigError("each credential needs 'env'", source=source, field=f"{name}.env")
    kind = str(entry.get("kind", "provider_api_key"))
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}", source=source, field=f"{name}.kind")
    check = entry.get("check", name if name in CHECKS else None)
    if check is not None and check not in CHECKS:
        raise ConfigError(f"unknown check {check!r}", source=source, field=f"{name}.check")
    options = {str(k): str(v) for k, v in (entry.get("options") or {}).items()}
    expires = parse_expiry(entry.get("expires"), source=source, name=name)
    return Credential(name, str(entry["env"]), kind, expires, check, options)


# -- live checks (rule 3) ------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What a check may read besides its credential: the environment and the time."""

    environ: Mapping[str, str]
    now_s: float


Check = Callable[[Credential, str, httpx.AsyncClient, CheckContext], Awaitable[CheckResult]]


async def _get(
    client: httpx.AsyncClient, url: str, shown: str, **kwargs: Any
) -> tuple[CheckResult, httpx.Response | None]:
    """One GET; ``shown`` is the URL as it may appear in messages (no secret)."""
    try:
        response = await client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        return CheckResult(None, f"{shown} unreachable: {type(exc).__name__}"), None
    if response.status_code in (401, 403):
        return CheckResult(False, f"HTTP {response.status_code} from {shown}"), response
    if response.status_code >= 300:
        return CheckResult(None, f"HTTP {response.status_code} from {shown}"), response
    return CheckResult(True, f"accepted by {shown}"), response


def _base(cred: Credential, default: str) -> str:
    return cred.options.get("base_url", default).rstrip("/")


async def _check_bearer_models(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    url = _base(cred, "https://api.openai.com/v1") + "/models"
    result, _ = await _get(client, url, url, headers={"Authorization": f"Bearer {secret}"})
    return result


async def _check_deepgram(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    base = _base(cred, "https://api.deepgram.com")
    headers = {"Authorization": f"Token {secret}"}
    project, key = cred.options.get("project_id"), cred.options.get("key_id")
    if not (project and key):
        result, _ = await _get(
            client, f"{base}/v1/projects", f"{base}/v1/projects", headers=headers
        )
        return result
    url = f"{base}/v1/projects/{project}/keys/{key}"
    result, response = await _get(client, url, url, headers=headers)
    if result.ok and response is not None:
        item = _json(response).get("item") or {}
        expiry = (item.get("api_key") or {}).get("expiration_date")
        return CheckResult(True, result.detail, parse_expiry(expiry) if expiry else None)
    return result


async def _check_elevenlabs(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    url = _base(cred, "https://api.elevenlabs.io") + "/v1/user"
    result, _ = await _get(client, url, url, headers={"xi-api-key": secret})
    return result


async def _check_cartesia(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    url = _base(cred, "https://api.cartesia.ai") + "/voices"
    version = cred.options.get("version", "2025-04-16")
    headers = {"Authorization": f"Bearer {secret}", "Cartesia-Version": version}
    result, _ = await _get(client, url, url, headers=headers)
    return result


async def _check_twilio(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    sid = cred.options.get("account_sid") or ctx.environ.get(
        cred.options.get("account_sid_env", "TWILIO_ACCOUNT_SID"), ""
    )
    if not sid:
        return CheckResult(None, "no account sid (TWILIO_ACCOUNT_SID) to check the token with")
    url = _base(cred, "https://api.twilio.com") + f"/2010-04-01/Accounts/{sid}.json"
    result, _ = await _get(client, url, url, auth=(sid, secret))
    return result


async def _check_hubspot(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    base = _base(cred, "https://api.hubapi.com")
    shown = f"{base}/oauth/v1/access-tokens/<token>"
    result, response = await _get(client, f"{base}/oauth/v1/access-tokens/{secret}", shown)
    if result.ok and response is not None:
        expires_in = _json(response).get("expires_in")
        if isinstance(expires_in, int | float):
            return CheckResult(True, result.detail, ctx.now_s + float(expires_in))
    return result


async def _check_http(
    cred: Credential, secret: str, client: httpx.AsyncClient, ctx: CheckContext
) -> CheckResult:
    """The generic check: ``url``, ``header`` (default Authorization), ``scheme``
    (default Bearer), and ``expires_field`` (a dotted path to an ISO date, Unix
    seconds, or, when the last part is ``expires_in``, seconds from now)."""
    url = cred.options.get("url")
    if not url:
        return CheckResult(None, "the http check needs options.url")
    header = cred.options.get("header", "Authorization")
    scheme = cred.options.get("scheme", "Bearer")
    value = f"{scheme} {secret}".strip()
    result, response = await _get(client, url, url, headers={header: value})
    path = cred.options.get("expires_field")
    if not (result.ok and response is not None and path):
        return result
    found: Any = _json(response)
    for part in path.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    if found is None:
        return result
    if path.split(".")[-1] == "expires_in" and isinstance(found, int | float):
        return CheckResult(True, result.detail, ctx.now_s + float(found))
    try:
        return CheckResult(True, result.detail, parse_expiry(found))
    except ConfigError:
        return CheckResult(True, f"{result.detail}; unreadable {path} {found!r}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


#: Live check presets by name.
CHECKS: dict[str, Check] = {
    "openai": _check_bearer_models,
    "deepgram": _check_deepgram,
    "elevenlabs": _check_elevenlabs,
    "cartesia": _check_cartesia,
    "twilio": _check_twilio,
    "hubspot": _check_hubspot,
    "http": _check_http,
}


async def run_check(
    cred: Credential,
    client: httpx.AsyncClient,
    *,
    now_s: float,
    environ: Mapping[str, str] | None = None,
) -> CheckResult | None:
    """The live check of ``cred`` (None when it has none or its secret is unset)."""
    environ = os.environ if environ is None else environ
    secret = environ.get(cred.env)
    if not secret or cred.check is None:
        return None
    return await CHECKS[cred.check](cred, secret, client, CheckContext(environ, now_s))


# -- statuses (rule 4) -----------------------------------------------------------------


def status_of(
    cred: Credential,
    result: CheckResult | None,
    *,
    now_s: float,
    present: bool,
    checked_at: float | None = None,
    warn_before_s: float = WARN_BEFORE_S,
) -> CredentialStatus:
    """Combine configuration, a check result and the time into one status."""
    expires_at, source = cred.expires_at, "configured" if cred.expires_at else None
    if result is not None and result.expires_at is not None:
        expires_at, source = result.expires_at, "provider"
    days_left = (expires_at - now_s) / DAY_S if expires_at is not None else None
    detail = result.detail if result is not None else ""
    if expires_at is not None and expires_at - now_s <= warn_before_s:
        day = dt.datetime.fromtimestamp(expires_at, tz=dt.UTC).strftime("%Y-%m-%d")
        detail = "; ".join(filter(None, [f"expires {day} ({days_left:.0f} days)", detail]))
    if not present:
        state, detail = "missing", f"${cred.env} is not set"
    elif result is not None and result.ok is False:
        state = "refused"
    elif expires_at is not None and expires_at <= now_s:
        state = "expired"
    elif expires_at is not None and expires_at - now_s <= warn_before_s:
        state = "expiring"
    elif result is not None and result.ok is None:
        state = "unverified"
    elif result is not None:
        state = "ok"
    else:
        state = "unchecked"
    return CredentialStatus(
        cred.name, cred.env, cred.kind, state, detail, expires_at, source, days_left, checked_at
    )


async def check_all(
    registry: list[Credential],
    client: httpx.AsyncClient,
    *,
    now_s: float,
    live: bool = True,
    environ: Mapping[str, str] | None = None,
    warn_before_s: float = WARN_BEFORE_S,
) -> list[CredentialStatus]:
    """Statuses of every credential, live checks run concurrently when ``live``."""
    environ = os.environ if environ is None else environ
    results: list[CheckResult | None] = [None] * len(registry)
    if live:
        checks = (run_check(c, client, now_s=now_s, environ=environ) for c in registry)
        results = list(await asyncio.gather(*checks))
    return [
        status_of(
            cred,
            result,
            now_s=now_s,
            present=bool(environ.get(cred.env)),
            checked_at=now_s if result is not None else None,
            warn_before_s=warn_before_s,
        )
        for cred, result in zip(registry, results, strict=True)
    ]


async def validate_at_startup(
    registry: list[Credential],
    client: httpx.AsyncClient,
    *,
    now_s: float,
    environ: Mapping[str, str] | None = None,
    source: str = "<credentials>",
) -> list[CredentialStatus]:
    """Rule 5: check every credential; raise on the first that cannot work.

    Raises:
        CredentialError: a credential is missing, refused or expired.
    """
    statuses = await check_all(registry, client, now_s=now_s, environ=environ)
    for status in statuses:
        if status.state in ("missing", "refused", "expired"):
            what = {
                "missing": "is not set",
                "refused": "was refused",
                "expired": "has expired",
            }[status.state]
            raise CredentialError(
                f"credential {status.name!r} (${status.env}) {what}: {status.detail}",
                credential=status.name,
                env=status.env,
                source=source,
            )
    return statuses


def check_at_startup(
    registry: list[Credential],
    *,
    now_s: float,
    environ: Mapping[str, str] | None = None,
    source: str = "<credentials>",
    timeout_s: float = 10.0,
) -> list[CredentialStatus]:
    """:func:`validate_at_startup` for synchronous callers (``voicerail serve``).

    Raises:
        CredentialError: a credential is missing, refused or expired.
    """

    async def validate() -> list[CredentialStatus]:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            return await validate_at_startup(
                registry, client, now_s=now_s, environ=environ, source=source
            )

    return asyncio.run(validate())
