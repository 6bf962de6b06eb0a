"""The CRM seam: what a connector does, and the values that cross it.

Rules kept here:

1. A connector does two things: find a customer by phone number
   (:meth:`CRMConnector.lookup_phone`) and apply one write
   (:meth:`CRMConnector.upsert`). Every write is an *upsert keyed by its
   idempotency key* (HubSpot: a unique property; Salesforce: an external id
   field; the embedded CRM: a UNIQUE column): applying the same write twice
   leaves one record. Neither cloud CRM honours an idempotency header, so the
   key must live in the record itself.
2. The idempotency key is ``{call_id}:t{turn}:{action}:{16 hex of sha256 of the
   canonical JSON arguments}`` (:func:`idempotency_key`), the key the LLM agent
   already derives: a replay of the same tool call on the same turn, from a
   failover, a barge-in or a restarted worker, yields the same key.
3. A write may name the *entity* it sets the whole state of (a booking:
   ``booking:BK-1A2B3C4D``). The CRM then upserts on the entity
   (:attr:`CRMWrite.record_key`) rather than on the idempotency key, so a
   booking, its reschedule and its cancellation land on one record; the outbox
   delivers an entity's writes in the order recorded and lets a newer one
   supersede an older one not yet delivered (``crm/outbox.py`` rule 6).
4. A connector raises :class:`~voicerail.errors.CRMError` and nothing else on
   purpose; its ``error_class`` says whether retrying can help and
   ``retry_after_s`` how long the CRM asked us to wait.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class WriteAction(StrEnum):
    """The writes an agent makes to the CRM."""

    BOOKING = "booking"
    LEAD = "lead"
    CALL_SUMMARY = "call_summary"
    DISPOSITION = "disposition"
    HANDOFF_SUMMARY = "handoff_summary"
    CALLBACK = "callback"


@dataclass(frozen=True)
class CustomerRecord:
    """A customer as the CRM holds it, before the context gate.

    Attributes:
        crm_id: the CRM's own record id.
        fields: every field the CRM returned, by the CRM's field name. Personal
            data: never log or record this object; pass it through
            :class:`~voicerail.crm.gate.ContextGate` first.
    """

    crm_id: str
    fields: Mapping[str, Any]

    def __repr__(self) -> str:
        # The repr is what a stray log line or traceback would print: names only.
        return f"CustomerRecord(crm_id={self.crm_id!r}, fields=<{len(self.fields)} hidden>)"


@dataclass(frozen=True)
class CRMWrite:
    """One write the agent asks for.

    Attributes:
        idempotency_key: rule 2; the CRM upserts on it (rule 1).
        call_id: the call that made it.
        action: what it is.
        properties: the fields to write, by our name (the connector maps them).
            An entity's write carries the entity's whole state, never a change.
        entity: the record this write sets the whole state of (rule 3), or None.
    """

    idempotency_key: str
    call_id: str
    action: WriteAction
    properties: Mapping[str, Any] = field(default_factory=dict)
    entity: str | None = None

    @property
    def record_key(self) -> str:
        """What the CRM upserts on: the entity when there is one, else the key (rules 1, 3)."""
        return self.entity or self.idempotency_key

    def to_json(self) -> str:
        """The write as canonical JSON (what the outbox stores)."""
        body: dict[str, Any] = {
            "idempotency_key": self.idempotency_key,
            "call_id": self.call_id,
            "action": str(self.action),
            "properties": dict(self.properties),
        }
        if self.entity is not None:
            body["entity"] = self.entity
        return json.dumps(
            body,
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> CRMWrite:
        """The inverse of :meth:`to_json`.

        Raises:
            ValueError: ``text`` is not a write's JSON.
        """
        try:
            raw = json.loads(text)
            return cls(
                idempotency_key=str(raw["idempotency_key"]),
                call_id=str(raw["call_id"]),
                action=WriteAction(raw["action"]),
                properties=dict(raw["properties"]),
                entity=str(raw["entity"]) if raw.get("entity") else None,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a crm write: {exc}") from exc


@dataclass(frozen=True)
class WriteReceipt:
    """What the CRM answered to an upsert.

    Attributes:
        crm_id: the record's id in the CRM.
        created: True when this upsert created the record, False when it updated
            the record an earlier delivery of the same key had created.
    """

    crm_id: str
    created: bool


class CRMConnector(Protocol):
    """One CRM. Implementations: embedded SQLite, signed webhook, HubSpot, Salesforce."""

    name: str

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        """The customer whose phone number is ``phone_e164`` (``"+15551230000"``).

        Returns:
            The record with every field the CRM returned, or None when none matches.

        Raises:
            CRMError: the CRM failed or refused (see rule 4).
        """
        ...

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        """Apply ``write``, creating or updating the record keyed by its idempotency key.

        Raises:
            CRMError: the CRM failed or refused (see rule 4). The write may or
                may not have been applied (a timeout after the CRM committed):
                the relay retries, and rule 1 makes the retry harmless.
        """
        ...


def idempotency_key(call_id: str, turn: int, action: str, arguments: Mapping[str, Any]) -> str:
    """Rule 2's key: ``{call_id}:t{turn}:{action}:{16 hex of sha256(canonical args)}``.

    Args:
        call_id: voicerail's call id.
        turn: the caller turn the write answers (0 for writes at call end).
        action: the tool or write name.
        arguments: its arguments; key order does not matter.
    """
    canonical = json.dumps(dict(arguments), sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"{call_id}:t{turn}:{action}:{digest}"


def normalize_phone(phone: str) -> str:
    """Digits of ``phone`` with a leading ``+`` (``"+1 (555) 123-0000"`` → ``"+15551230000"``)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return "+" + digits if digits else ""
