"""The one exception tree of voicerail.

::

    VoicerailError
    ├── ProtocolError            the peer (Twilio, a caller, a provider) sent something invalid
    │   └── StreamLimitExceeded  a media stream broke a deadline or the real-time rate
    ├── LocalProtocolError       we tried to send something invalid (a bug on our side)
    ├── ConfigError              a configuration or agent file is invalid; names the file and field
    │   └── CredentialError      a configured credential is missing, refused or expired; names it
    ├── ProviderError            a speech/LLM provider failed (provider, status, error_class)
    │   ├── ProviderTimeout      no answer within the attempt's deadline (transient)
    │   ├── ProviderUnavailable  every provider of a chain failed or is open-circuited
    │   └── CRMError             a CRM refused or failed a lookup or write (retry_after_s)
    ├── DialogError              the dialog engine could not produce a reply
    └── StoreError               an event, state or booking store failed
        └── StateConflict        a call state write carried a stale version (call_id, versions)

Errors carry structured fields; messages are lowercase with the numbers in them.
Code routes on types and fields, never on messages.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """How a failure should be handled by routing (see ``routing/``)."""

    TRANSIENT = "transient"  # 429, 5xx, connection reset: retry or fail over
    TIMEOUT = "timeout"  # deadline passed: fail over
    PERMANENT = "permanent"  # 400, 401, 403, 404: fail over, do not retry the same provider
    CANCELLED = "cancelled"  # the caller barged in: not a failure


class VoicerailError(Exception):
    """Base of every error voicerail raises on purpose."""


class ProtocolError(VoicerailError):
    """The remote peer sent a message that violates its protocol.

    Attributes:
        message: lowercase description with the offending values.
        event: the wire event name involved, when known.
    """

    def __init__(self, message: str, *, event: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event = event


class StreamLimitExceeded(ProtocolError):
    """A media stream broke one of its limits (``wire/stream_limits.py``).

    Attributes:
        limit: which one: ``"start_deadline"``, ``"media_silence"`` or ``"media_rate"``.
    """

    def __init__(self, message: str, *, limit: str, event: str | None = None) -> None:
        super().__init__(message, event=event)
        self.limit = limit


class ConfigError(VoicerailError):
    """A configuration or agent definition is invalid.

    Attributes:
        source: the file (or ``"<config>"``) the bad value came from.
        field: dotted path of the bad field, when known.
    """

    def __init__(self, message: str, *, source: str = "<config>", field: str | None = None):
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + message)
        self.source = source
        self.field = field


class CredentialError(ConfigError):
    """A credential the configuration uses does not work (start-up check).

    Attributes:
        credential: the credential's name in the registry (``"deepgram"``).
        env: the environment variable that holds it, when it comes from one.
    """

    def __init__(
        self, message: str, *, credential: str, env: str | None = None, source: str = "<config>"
    ) -> None:
        super().__init__(message, source=source)
        self.credential = credential
        self.env = env


class ProviderError(VoicerailError):
    """A provider failed.

    Attributes:
        provider: the provider's configured name (e.g. ``"piper"``, ``"deepgram"``).
        status: HTTP or WebSocket close status when there was one.
        error_class: how routing treats it (see :class:`ErrorClass`).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        error_class: ErrorClass = ErrorClass.TRANSIENT,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.error_class = error_class

    @property
    def retryable(self) -> bool:
        """True when another attempt (same or next provider) may succeed."""
        return self.error_class in (ErrorClass.TRANSIENT, ErrorClass.TIMEOUT)


class ProviderTimeout(ProviderError):
    """A provider did not answer within the attempt's deadline."""

    def __init__(self, message: str, *, provider: str, deadline_s: float) -> None:
        super().__init__(message, provider=provider, error_class=ErrorClass.TIMEOUT)
        self.deadline_s = deadline_s


class ProviderUnavailable(ProviderError):
    """No provider of a chain could serve the request."""


class CRMError(ProviderError):
    """A CRM (HubSpot, Salesforce, a webhook, the embedded one) failed a call.

    Attributes:
        retry_after_s: how long the CRM asked us to wait (``Retry-After``, a rate
            limit window), None when it said nothing.
        code: the CRM's own error code (``"REQUEST_LIMIT_EXCEEDED"``,
            ``"RATE_LIMIT"``, ``"EXPIRED_AUTHENTICATION"``), when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        error_class: ErrorClass = ErrorClass.TRANSIENT,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status, error_class=error_class)
        self.retry_after_s = retry_after_s
        self.code = code


class DialogError(VoicerailError):
    """The dialog engine could not produce a reply."""


class StoreError(VoicerailError):
    """A store (events, state, bookings) failed to read or write."""


class StateConflict(StoreError):
    """A call state write was refused: it was based on a version that is no longer
    the stored one (another worker wrote the call since).

    Attributes:
        call_id: the call.
        expected_version: the version the write was based on.
        stored_version: the version in the store (0: none).
    """

    def __init__(self, call_id: str, expected_version: int, stored_version: int) -> None:
        super().__init__(
            f"call {call_id}: state write based on version {expected_version},"
            f" store has version {stored_version}"
        )
        self.call_id = call_id
        self.expected_version = expected_version
        self.stored_version = stored_version


def classify_http_status(status: int) -> ErrorClass:
    """Map an HTTP status to an :class:`ErrorClass`.

    408, 425, 429 and every 5xx are transient; other 4xx are permanent.
    """
    if status in (408, 425, 429) or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


class LocalProtocolError(VoicerailError):
    """We tried to send something the protocol forbids; the bug is on our side.

    The counterpart of :class:`ProtocolError` (the peer's fault), as in h11.

    Attributes:
        message: lowercase description with the offending values.
        event: the wire event name involved, when known.
    """

    def __init__(self, message: str, *, event: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event = event
