"""The event model: every step of a call is a past-tense, timestamped, call-keyed fact.

Rules kept here:

1. Event kinds are members of :class:`EventKind`, never free strings.
2. Personal data (transcripts, agent text that may echo it, names, digits, phone
   numbers) goes only in ``Event.pii``; ``Event.data`` must be safe to log.
3. Times: ``at_wall`` is Unix seconds (UTC); ``at_mono`` is the driver's monotonic
   clock in seconds, for intervals within one process.

Every field and kind, the tables and the versioning rules are documented in
``events/schema.md`` (this is version :data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class Stage(StrEnum):
    """Where in the call path an event happened."""

    TELEPHONY = "telephony"
    VAD = "vad"
    STT = "stt"
    DIALOG = "dialog"
    LLM = "llm"
    TTS = "tts"
    CRM = "crm"
    HANDOFF = "handoff"


class EventKind(StrEnum):
    """Every kind of event voicerail records."""

    CALL_STARTED = "CallStarted"
    STREAM_STARTED = "StreamStarted"
    CALL_RESUMED = "CallResumed"  # a new stream carries the call on (session/resume.py)
    USER_TURN_STARTED = "UserTurnStarted"
    USER_TURN_ENDED = "UserTurnEnded"
    TRANSCRIPT_FINAL = "TranscriptFinal"
    DIALOG_DECIDED = "DialogDecided"
    TTS_FIRST_AUDIO = "TTSFirstAudio"
    HOLDING_PHRASE_PLAYED = "HoldingPhrasePlayed"
    MARK_PLAYED = "MarkPlayed"
    BARGE_IN = "BargeIn"
    REPROMPTED = "Reprompted"
    DTMF_RECEIVED = "DTMFReceived"
    HANDOFF_REQUESTED = "HandoffRequested"
    CALL_TRANSFERRED = "CallTransferred"
    BOOKING_WRITTEN = "BookingWritten"
    PROVIDER_ATTEMPTED = "ProviderAttempted"
    PROVIDER_FAILED_OVER = "ProviderFailedOver"
    PROVIDER_VERSION_CHANGED = "ProviderVersionChanged"
    PROTOCOL_ERROR = "ProtocolErrorReceived"
    TTS_VALIDATED = "TTSValidated"
    CALL_ENDED = "CallEnded"
    CALL_REFUSED = "CallRefused"  # beyond capacity: refused before it became a call
    # compliance/ (issue 14)
    DISCLOSURE_GIVEN = "DisclosureGiven"
    CONSENT_RECORDED = "ConsentRecorded"
    GUARD_TRIGGERED = "OutputGuardTriggered"
    REVIEW_LABELED = "ReviewLabeled"


class Outcome(StrEnum):
    """How a call ended."""

    COMPLETED = "completed"  # the task was done (e.g. a booking id exists)
    HANDOFF = "handoff"  # a human was requested / transfer started
    ABANDONED = "abandoned"  # the caller hung up first
    FAILED = "failed"  # an error ended the call


@dataclass(frozen=True)
class Event:
    """One fact about one call.

    Attributes:
        call_id: voicerail's call id.
        kind: what happened.
        at_wall: Unix time, seconds.
        at_mono: driver monotonic time, seconds.
        stage: where in the call path, when it applies.
        provider: provider name, when one was involved.
        model: provider model, when one was involved.
        latency_s: the step's latency in seconds, when it has one.
        outcome: ``ok`` / ``error`` / ``cancelled`` for attempts; the call outcome on
            ``CallEnded``.
        error_class: see :class:`voicerail.errors.ErrorClass`.
        data: safe-to-log structured fields.
        pii: personal data (transcripts, names, digits); redacted on the way to logs.
        seq: position in the call, assigned by the store.
    """

    call_id: str
    kind: EventKind
    at_wall: float
    at_mono: float
    stage: Stage | None = None
    provider: str | None = None
    model: str | None = None
    latency_s: float | None = None
    outcome: str | None = None
    error_class: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    pii: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict; ``redact`` replaces every ``pii`` value by a marker."""
        pii = {k: "[redacted]" for k in self.pii} if redact else dict(self.pii)
        return {
            "call_id": self.call_id,
            "seq": self.seq,
            "kind": str(self.kind),
            "at_wall": self.at_wall,
            "at_mono": self.at_mono,
            "stage": str(self.stage) if self.stage else None,
            "provider": self.provider,
            "model": self.model,
            "latency_s": self.latency_s,
            "outcome": self.outcome,
            "error_class": self.error_class,
            "data": dict(self.data),
            "pii": pii,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Rebuild an event from :meth:`to_dict` output (e.g. the REST API's JSON).

        Raises:
            ValueError: an unknown ``kind`` or ``stage``.
            KeyError: a missing field.
        """
        return cls(
            call_id=raw["call_id"],
            kind=EventKind(raw["kind"]),
            at_wall=raw["at_wall"],
            at_mono=raw["at_mono"],
            stage=Stage(raw["stage"]) if raw.get("stage") else None,
            provider=raw.get("provider"),
            model=raw.get("model"),
            latency_s=raw.get("latency_s"),
            outcome=raw.get("outcome"),
            error_class=raw.get("error_class"),
            data=dict(raw.get("data") or {}),
            pii=dict(raw.get("pii") or {}),
            seq=raw.get("seq", 0),
        )
