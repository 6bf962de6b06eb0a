"""Erasure and retention over every store a deployment writes.

The stores (``voicerail serve --data-dir DIR``), and what each holds of a caller:

========================  =====================================================
``events.sqlite3``        calls, events (transcripts and agent texts in ``pii``),
                          per-call costs
``outbox.sqlite3``        CRM writes waiting or done (leads carry the phone),
                          per-call dialog state
``crm.sqlite3``           the embedded CRM: contacts by phone, records by call
``bookings.sqlite3``      bookings made in calls (the caller's name)
Redis (``--redis-url``)   live call state by call id and CallSid
audio                     none: voicerail records no call audio
========================  =====================================================

Rules:

1. A caller's calls are those whose ``StreamStarted`` names their number (the
   ``from`` custom parameter), plus any call whose events, CRM writes or state
   mention it. Everything keyed by those calls goes, in every store, and so does
   every row that names the number anywhere.
2. Deleted rows are overwritten on disk (``PRAGMA secure_delete``), the WAL is
   checkpointed and truncated and the file vacuumed, so the bytes are gone from
   the files, not only from query results. While a server has the file open the
   vacuum is skipped and a reader may hold old WAL frames until its next
   checkpoint.
3. Retention (:func:`apply_retention`) works per data class: ``transcripts``
   (free text in events' ``pii`` is emptied), ``events`` (whole calls go),
   ``crm_writes`` (finished outbox rows and CRM records), ``audio`` (nothing is
   stored; always 0).
4. Each function returns a :class:`Receipt`: store → rows removed, printed by
   the CLI and written to the audit log (counts and a phone *reference* only).

A PostgreSQL event store and outbox (``--database-url``) are handled by
``stores_pg.py`` with the same rules; the CRM and bookings files stay SQLite.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicerail.crm.model import normalize_phone
from voicerail.errors import StoreError

log = logging.getLogger(__name__)

DATA_CLASSES = ("audio", "transcripts", "events", "crm_writes")
DAY_S = 86400.0


@dataclass
class Receipt:
    """What was removed, by store (``"events.sqlite3: events"`` → rows)."""

    removed: dict[str, int] = field(default_factory=dict)

    def add(self, store: str, count: int) -> None:
        self.removed[store] = self.removed.get(store, 0) + count

    @property
    def total(self) -> int:
        """Rows removed in all stores."""
        return sum(self.removed.values())

    def lines(self) -> list[str]:
        """One line per store, for the CLI."""
        return [f"{store}: {count}" for store, count in sorted(self.removed.items())]


def _open(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(path, timeout=10.0)
        db.execute("PRAGMA secure_delete=ON")  # rule 2
    except sqlite3.Error as exc:
        raise StoreError(f"{path.name} cannot be opened: {exc}") from exc
    return db


def _close(db: sqlite3.Connection) -> None:
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # rule 2
    try:
        db.execute("VACUUM")  # rule 2: free pages go too
    except sqlite3.OperationalError:
        # A running server holds the file: secure_delete has already zeroed the
        # rows' pages, and its own checkpoints overwrite the WAL's old frames.
        log.info("vacuum skipped: the store is in use")
    db.close()


def _variants(phone: str) -> list[str]:
    """How a number may be written in stored JSON: +15551230000, 15551230000, 5551230000."""
    plus = normalize_phone(phone)
    digits = plus[1:]
    out = [plus, digits]
    if len(digits) == 11 and digits.startswith("1"):
        out.append(digits[1:])
    return out


def _mentions(text: str | None, variants: Sequence[str]) -> bool:
    if not text:
        return False
    squeezed = "".join(ch for ch in text if ch.isdigit() or ch == "+")
    return any(v in text or v in squeezed for v in variants)


def _caller_calls(db: sqlite3.Connection, variants: Sequence[str]) -> set[str]:
    """Rule 1 in the event store."""
    calls: set[str] = set()
    for call_id, pii in db.execute("SELECT call_id, pii FROM events"):
        if _mentions(pii, variants):
            calls.add(call_id)
    return calls


def _delete_in(db: sqlite3.Connection, table: str, column: str, keys: Iterable[str]) -> int:
    keys = list(keys)
    count = 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        count += db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk).rowcount
    return count


def _delete_mentions(
    db: sqlite3.Connection, table: str, key: str, text_column: str, variants: Sequence[str]
) -> int:
    rows = db.execute(f"SELECT {key}, {text_column} FROM {table}").fetchall()
    return _delete_in(db, table, key, [k for k, text in rows if _mentions(text, variants)])


#: Per-call facts the rollups keep (``events/rollups.py``); the counts stay.
_ROLLUP_CALL_TABLES = ("call_attempt_firsts", "call_causes")


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return db.execute(query, (table,)).fetchone() is not None


def erase_phone(
    phone: str,
    data_dir: Path,
    redis_url: str | None = None,
    redis_prefix: str = "voicerail:",
    *,
    known_calls: Iterable[str] = (),
    known_sids: Iterable[str] = (),
) -> Receipt:
    """Remove one caller from every store (rules 1, 2 and 4).

    ``known_calls`` and ``known_sids`` are the caller's calls found elsewhere (a
    PostgreSQL event store, ``stores_pg.py``): their rows go here too.

    Raises:
        StoreError: a store cannot be opened or written.
        ValueError: ``phone`` has no digits.
    """
    variants = _variants(phone)
    if not variants[0]:
        raise ValueError(f"not a phone number: {len(phone)} characters without digits")
    receipt = Receipt()
    calls: set[str] = set(known_calls)
    call_sids: set[str] = set(known_sids)
    try:
        if (db := _open(data_dir / "events.sqlite3")) is not None:
            calls |= _caller_calls(db, variants)
            call_sids |= _sids_of(db, calls)
            receipt.add("events.sqlite3: events", _delete_in(db, "events", "call_id", calls))
            receipt.add("events.sqlite3: calls", _delete_in(db, "calls", "call_id", calls))
            receipt.add(
                "events.sqlite3: call_costs", _delete_in(db, "call_costs", "call_id", calls)
            )
            for table in _ROLLUP_CALL_TABLES:  # per-call rollup facts (events/rollups.py)
                if _has_table(db, table):
                    _delete_in(db, table, "call_id", calls)
            _close(db)
        if (db := _open(data_dir / "outbox.sqlite3")) is not None:
            calls |= {
                c
                for c, p in db.execute("SELECT call_id, payload FROM crm_outbox")
                if _mentions(p, variants)
            }
            receipt.add(
                "outbox.sqlite3: crm_outbox", _delete_in(db, "crm_outbox", "call_id", calls)
            )
            receipt.add(
                "outbox.sqlite3: call_state", _delete_in(db, "call_state", "call_id", calls)
            )
            _close(db)
        if (db := _open(data_dir / "crm.sqlite3")) is not None:
            removed = _delete_mentions(db, "crm_contacts", "phone", "phone", variants)
            removed += _delete_mentions(db, "crm_contacts", "phone", "fields", variants)
            receipt.add("crm.sqlite3: crm_contacts", removed)
            removed = _delete_in(db, "crm_records", "call_id", calls)
            removed += _delete_mentions(
                db, "crm_records", "idempotency_key", "properties", variants
            )
            receipt.add("crm.sqlite3: crm_records", removed)
            _close(db)
        if (db := _open(data_dir / "bookings.sqlite3")) is not None:
            receipt.add("bookings.sqlite3: bookings", _delete_in(db, "bookings", "call_id", calls))
            _close(db)
    except sqlite3.Error as exc:
        raise StoreError(f"erasure failed: {exc}") from exc
    if redis_url:
        receipt.add("redis: call state", _erase_redis(redis_url, calls, call_sids, redis_prefix))
    receipt.add("audio", 0)
    return receipt


def _sids_of(db: sqlite3.Connection, calls: set[str]) -> set[str]:
    if not calls:
        return set()
    marks = ",".join("?" * len(calls))
    rows = db.execute(f"SELECT call_sid FROM calls WHERE call_id IN ({marks})", list(calls))
    return {sid for (sid,) in rows if sid}


def _erase_redis(url: str, calls: set[str], call_sids: set[str], prefix: str) -> int:
    """The live state of ``calls`` (``state/redis_store.py``'s keys), and the
    transfer records of their CallSids (``handoff/transfers.py``: call id
    ``transfer:<CallSid>``)."""
    try:
        import redis
    except ImportError as exc:  # the redis extra
        raise StoreError("redis-py is not installed: pip install 'voicerail[redis]'") from exc
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        keys = [f"{prefix}call:{c}" for c in calls] + [f"{prefix}sid:{s}" for s in call_sids]
        keys += [f"{prefix}call:transfer:{s}" for s in call_sids]
        return int(client.delete(*keys)) if keys else 0
    except redis.RedisError as exc:
        raise StoreError(f"redis erasure failed: {exc}") from exc
    finally:
        client.close()


def apply_retention(days: dict[str, float], data_dir: Path, *, now: float) -> Receipt:
    """Rule 3: remove what is older than its class's days (Unix time ``now``).

    Args:
        days: data class (:data:`DATA_CLASSES`) → days kept; a missing class is kept.

    Raises:
        StoreError: a store cannot be opened or written.
    """
    receipt = Receipt()
    try:
        if (db := _open(data_dir / "events.sqlite3")) is not None:
            if "transcripts" in days:
                cutoff = now - days["transcripts"] * DAY_S
                count = db.execute(
                    "UPDATE events SET pii = '{}' WHERE at_wall < ? AND pii != '{}'", (cutoff,)
                ).rowcount
                receipt.add("events.sqlite3: transcripts", count)
            if "events" in days:
                cutoff = now - days["events"] * DAY_S
                old = [
                    c
                    for (c,) in db.execute(
                        "SELECT call_id FROM calls WHERE started_at < ?", (cutoff,)
                    )
                ]
                receipt.add("events.sqlite3: events", _delete_in(db, "events", "call_id", old))
                receipt.add("events.sqlite3: calls", _delete_in(db, "calls", "call_id", old))
                _delete_in(db, "call_costs", "call_id", old)
                for table in _ROLLUP_CALL_TABLES:
                    if _has_table(db, table):
                        _delete_in(db, table, "call_id", old)
            _close(db)
        if "crm_writes" in days:
            cutoff = now - days["crm_writes"] * DAY_S
            if (db := _open(data_dir / "outbox.sqlite3")) is not None:
                count = db.execute(
                    "DELETE FROM crm_outbox WHERE status != 'pending' AND created_at < ?", (cutoff,)
                ).rowcount
                count += db.execute(
                    "DELETE FROM call_state WHERE updated_at < ?", (cutoff,)
                ).rowcount
                receipt.add("outbox.sqlite3: crm writes", count)
                _close(db)
    except sqlite3.Error as exc:
        raise StoreError(f"retention failed: {exc}") from exc
    receipt.add("audio", 0)
    return receipt


def receipt_json(receipt: Receipt) -> str:
    """The receipt as JSON (``--json``)."""
    return json.dumps({"removed": receipt.removed, "total": receipt.total}, sort_keys=True)
