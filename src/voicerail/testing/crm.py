"""An in-process CRM for outbox tests and the soak benchmark, with scripted faults.

:class:`InMemoryCRM` upserts by idempotency key, as the real CRMs do with an
external id, and counts how many times each key *created* a record: a count
above one is a duplicate. Faults are drawn per attempt from a seeded
generator, or scripted per key:

* ``timeout_after_commit``: the write is applied, then the answer is lost
  (``TimeoutError``, as the relay's deadline would raise).
* ``rate_limited``: 429 with ``Retry-After`` (nothing applied).
* ``server_error``: 503 (nothing applied).
* ``kill``: the relay dies here (:class:`RelayKilled`, a ``BaseException``
  that nothing in the relay catches), after the CRM applied the write or
  before, at random.
* ``permanent``: 400 (nothing applied; the row is dead-lettered).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicerail.crm.model import CRMWrite, CustomerRecord, WriteReceipt, normalize_phone
from voicerail.errors import CRMError, ErrorClass

FAULTS = ("timeout_after_commit", "rate_limited", "server_error", "kill")


class RelayKilled(BaseException):
    """The relay process died at this point (a fault of :class:`InMemoryCRM`)."""


@dataclass
class InMemoryCRM:
    """See the module docstring.

    Attributes:
        fault_rate: share of attempts that fail, drawn uniformly among ``faults``.
        faults: the fault kinds to draw from.
        scripted: key → faults for its next attempts, in order (overrides the draw).
        seed: the generator's seed.
        upsert_by_key: False makes every applied write create a record, as a
            plain create endpoint would (shows what the duplicate count catches).
        retry_after_s: what ``rate_limited`` sends as ``Retry-After``.
        contacts: phone (E.164) → fields.
        records: record key (``CRMWrite.record_key``) → properties last written.
        creates: record key → how many upserts created (not updated) its record.
        applied: every write applied, in order.
        attempts: every upsert attempt, faulty ones included.
        fault_counts: fault kind → times injected.
    """

    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    scripted: dict[str, list[str]] = field(default_factory=dict)
    seed: int = 7
    retry_after_s: float = 1.0
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    applied: list[CRMWrite] = field(default_factory=list)
    attempts: int = 0
    fault_counts: Counter[str] = field(default_factory=Counter)
    upsert_by_key: bool = True
    name: str = "memory"

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def duplicates(self) -> int:
        """Records created more than once for one key (must be 0)."""
        return sum(n - 1 for n in self.creates.values() if n > 1)

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        fields = self.contacts.get(normalize_phone(phone_e164))
        return CustomerRecord("mem-" + phone_e164, fields) if fields is not None else None

    def _apply(self, write: CRMWrite) -> WriteReceipt:
        key = write.record_key
        created = key not in self.records or not self.upsert_by_key
        self.records[key] = dict(write.properties)
        self.applied.append(write)
        if created:
            self.creates[key] += 1
        return WriteReceipt(crm_id="mem-" + key, created=created)

    def _draw(self, key: str) -> str | None:
        script = self.scripted.get(key)
        if script:
            return script.pop(0)
        if self._random.random() < self.fault_rate:
            return self._random.choice(self.faults)
        return None

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        self.attempts += 1
        fault = self._draw(write.idempotency_key)
        if fault is None or fault == "ok":
            return self._apply(write)
        self.fault_counts[fault] += 1
        if fault == "timeout_after_commit":
            self._apply(write)
            raise TimeoutError
        if fault == "rate_limited":
            raise CRMError(
                "rate limited",
                provider=self.name,
                status=429,
                retry_after_s=self.retry_after_s,
                code="RATE_LIMIT",
            )
        if fault == "server_error":
            raise CRMError("server error", provider=self.name, status=503)
        if fault == "kill":
            if self._random.random() < 0.5:
                self._apply(write)
            raise RelayKilled
        if fault == "permanent":
            raise CRMError(
                "invalid property",
                provider=self.name,
                status=400,
                error_class=ErrorClass.PERMANENT,
                code="VALIDATION_ERROR",
            )
        raise ValueError(f"unknown fault {fault!r}")
