"""Erasure and retention on a PostgreSQL event store and outbox (``--database-url``).

The same rules as ``stores.py`` (1, 3 and 4) on the same tables: ``calls``,
``events`` (``pii`` JSONB), ``call_costs``, and the outbox's ``crm_outbox`` and
``call_state`` when they are in the same database. Rule 2 there: deleted rows
become dead tuples, so the tables are vacuumed afterwards (best effort: a
``VACUUM`` that cannot take its lock is left to autovacuum).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from voicerail.compliance.stores import DAY_S, Receipt, _mentions, _variants
from voicerail.errors import StoreError

log = logging.getLogger(__name__)

_EVENT_TABLES = ("events", "calls", "call_costs", "call_attempt_firsts", "call_causes")
_OUTBOX_TABLES = ("crm_outbox", "call_state")


def _connect(url: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # the postgres extra
        raise StoreError("psycopg is not installed: pip install 'voicerail[postgres]'") from exc
    try:
        return psycopg.connect(url)
    except psycopg.Error as exc:
        raise StoreError(f"postgresql cannot be reached: {type(exc).__name__}") from exc


def _tables(db: Any) -> set[str]:
    names = [*_EVENT_TABLES, *_OUTBOX_TABLES]
    rows = db.execute("SELECT relname FROM pg_class WHERE relname = ANY(%s)", (names,)).fetchall()
    return {str(r[0]) for r in rows}


def _vacuum(url: str, tables: Sequence[str]) -> None:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as db:
            for table in tables:
                db.execute(f"VACUUM {table}")
    except psycopg.Error as exc:
        log.info("vacuum skipped: %s", type(exc).__name__)


def erase_phone_pg(phone: str, url: str) -> tuple[Receipt, set[str], set[str]]:
    """Rule 1 on PostgreSQL: the receipt, the caller's call ids and CallSids (for Redis).

    Raises:
        StoreError: the database failed.
        ValueError: ``phone`` has no digits.
    """
    import psycopg

    variants = _variants(phone)
    if not variants[0]:
        raise ValueError(f"not a phone number: {len(phone)} characters without digits")
    receipt = Receipt()
    try:
        with _connect(url) as db:
            present = _tables(db)
            calls: set[str] = set()
            if "events" in present:
                rows = db.execute("SELECT call_id, pii::text FROM events").fetchall()
                calls = {str(c) for c, p in rows if _mentions(p, variants)}
            if "crm_outbox" in present:
                rows = db.execute("SELECT call_id, payload::text FROM crm_outbox").fetchall()
                calls |= {str(c) for c, p in rows if _mentions(p, variants)}
            sids: set[str] = set()
            if "calls" in present and calls:
                rows = db.execute(
                    "SELECT call_sid FROM calls WHERE call_id = ANY(%s)", (list(calls),)
                ).fetchall()
                sids = {str(r[0]) for r in rows if r[0]}
            for table in (*_EVENT_TABLES, *_OUTBOX_TABLES):
                if table in present:
                    cursor = db.execute(
                        f"DELETE FROM {table} WHERE call_id = ANY(%s)", (list(calls),)
                    )
                    receipt.add(f"postgresql: {table}", cursor.rowcount)
    except psycopg.Error as exc:
        raise StoreError(f"postgresql erasure failed: {type(exc).__name__}") from exc
    _vacuum(url, [t for t in (*_EVENT_TABLES, *_OUTBOX_TABLES) if t in present])
    return receipt, calls, sids


def apply_retention_pg(days: dict[str, float], url: str, *, now: float) -> Receipt:
    """Rule 3 on PostgreSQL.

    Raises:
        StoreError: the database failed.
    """
    import psycopg

    receipt = Receipt()
    try:
        with _connect(url) as db:
            present = _tables(db)
            if "transcripts" in days and "events" in present:
                cutoff = now - days["transcripts"] * DAY_S
                cursor = db.execute(
                    "UPDATE events SET pii = '{}'::jsonb WHERE at_wall < %s AND pii <> '{}'::jsonb",
                    (cutoff,),
                )
                receipt.add("postgresql: transcripts", cursor.rowcount)
            if "events" in days and "calls" in present:
                cutoff = now - days["events"] * DAY_S
                query = "SELECT call_id FROM calls WHERE started_at < %s"
                old = [r[0] for r in db.execute(query, (cutoff,)).fetchall()]
                for table in _EVENT_TABLES:
                    cursor = db.execute(f"DELETE FROM {table} WHERE call_id = ANY(%s)", (old,))
                    if table in ("events", "calls"):
                        receipt.add(f"postgresql: {table}", cursor.rowcount)
            if "crm_writes" in days and "crm_outbox" in present:
                cutoff = now - days["crm_writes"] * DAY_S
                cursor = db.execute(
                    "DELETE FROM crm_outbox WHERE status <> 'pending' AND created_at < %s",
                    (cutoff,),
                )
                receipt.add("postgresql: crm writes", cursor.rowcount)
    except psycopg.Error as exc:
        raise StoreError(f"postgresql retention failed: {type(exc).__name__}") from exc
    return receipt
