"""The transactional outbox on PostgreSQL: ``crm/outbox.py``'s rules, claimed with SKIP LOCKED.

The claim is one statement: the inner ``SELECT ... FOR UPDATE SKIP LOCKED``
locks due rows that no other relay is claiming at that instant and skips the
ones that are, and the outer ``UPDATE`` sets the lease and counts the attempt.
The row locks end with the claim's transaction; from then on the lease keeps
other relays away (rule 2), as on SQLite.

Rule 6 (an entity's writes in order) needs more than row locks under READ
COMMITTED: a relay could claim an entity's older row while another, whose
snapshot already holds a newer row but not yet the first relay's lease, claims
the newer one. So the claim also takes a transaction-scoped advisory lock per
entity (``pg_try_advisory_xact_lock``; an entity another relay is claiming at
that instant is skipped, like a locked row), and :meth:`PostgresOutbox.record`
takes the same lock, waiting, for each entity it writes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from voicerail.crm.model import CRMWrite
from voicerail.crm.outbox import (
    COMPLETE,
    DEAD,
    DUE,
    ENTITY_COLUMNS,
    ENTITY_INDEX,
    FAIL,
    INSERT_WRITE,
    PENDING,
    SCHEMA,
    STATS,
    SUPERSEDE,
    UPSERT_STATE,
    OutboxEntry,
    OutboxStats,
    stats_from_rows,
    write_params,
)
from voicerail.errors import StoreError


def _pg(sql: str) -> str:
    # The shared statements use "?" and contain no literal "?" or "%".
    return sql.replace("?", "%s").replace(" REAL", " DOUBLE PRECISION")


_CLAIM = (
    "UPDATE crm_outbox SET lease_owner = %s, lease_until = %s, claims = claims + 1 "
    f"WHERE idempotency_key IN ({_pg(DUE)} "
    "AND (c.entity IS NULL OR pg_try_advisory_xact_lock(%s::int, hashtext(c.entity))) "
    "ORDER BY c.next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
    "RETURNING payload, attempts + 1, claims, created_at"
)
_ENTITY_LOCK_CLASS = 0x766F6365  # the advisory lock space of rule 6's entity locks
_SCHEMA_LOCK_ID = 0x766F6362  # an advisory lock: two workers creating the schema at once


class PostgresOutbox:
    """The outbox and the call state on PostgreSQL (``crm/outbox.py`` rules 1-5).

    Args:
        url: a libpq connection string or URL.

    Raises:
        StoreError: the server cannot be reached or the schema cannot be created.
    """

    def __init__(self, url: str) -> None:
        try:
            self._db = psycopg.connect(url)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                for statement in filter(str.strip, _pg(SCHEMA).split(";")):
                    self._db.execute(statement)
                for name, kind in ENTITY_COLUMNS:
                    self._db.execute(
                        f"ALTER TABLE crm_outbox ADD COLUMN IF NOT EXISTS {name} {kind}"
                    )
                self._db.execute(ENTITY_INDEX)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the postgresql outbox: {exc}") from exc
        self._lock = threading.Lock()

    def _run(self, sql: str, args: tuple[Any, ...]) -> int:
        try:
            with self._lock, self._db.transaction():
                return self._db.execute(_pg(sql), args).rowcount
        except psycopg.Error as exc:
            raise StoreError(f"outbox transaction failed: {exc}") from exc

    def record(
        self, call_id: str, state_json: str, writes: Sequence[CRMWrite], now_s: float
    ) -> list[bool]:
        """Rule 1. See :class:`voicerail.crm.outbox.Outbox`.

        Raises:
            StoreError: the database failed; nothing was written.
        """
        try:
            with self._lock, self._db.transaction():
                self._db.execute(_pg(UPSERT_STATE), (call_id, state_json, now_s))
                for entity in sorted({w.entity for w in writes if w.entity}):
                    # Sorted: two records of the same entities never deadlock.
                    self._db.execute(
                        "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))",
                        (_ENTITY_LOCK_CLASS, entity),
                    )
                insert = _pg(INSERT_WRITE)
                return [
                    self._db.execute(insert, write_params(w, now_s)).rowcount == 1 for w in writes
                ]
        except psycopg.Error as exc:
            raise StoreError(f"outbox transaction failed: {exc}") from exc

    def call_state(self, call_id: str) -> str | None:
        """The state last recorded for ``call_id``, None when none.

        Raises:
            StoreError: the database failed.
        """
        rows = self._query("SELECT state FROM call_state WHERE call_id = %s", (call_id,))
        return str(rows[0][0]) if rows else None

    def claim(self, owner: str, limit: int, now_s: float, lease_s: float) -> list[OutboxEntry]:
        """Rule 2 with ``FOR UPDATE SKIP LOCKED``.

        Raises:
            StoreError: the database failed.
        """
        try:
            with self._lock, self._db.transaction():
                self._db.execute(_pg(SUPERSEDE), (now_s,))
                rows = self._db.execute(
                    _CLAIM,
                    (owner, now_s + lease_s, now_s, now_s, now_s, _ENTITY_LOCK_CLASS, limit),
                ).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"outbox claim failed: {exc}") from exc
        return [
            OutboxEntry(CRMWrite.from_json(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in rows
        ]

    def complete(self, key: str, owner: str, now_s: float, crm_id: str) -> bool:
        """Rule 3.

        Raises:
            StoreError: the database failed.
        """
        return self._run(COMPLETE, (now_s, crm_id, key, owner)) == 1

    def fail(
        self, key: str, owner: str, now_s: float, error: str, retry_at_s: float | None
    ) -> bool:
        """Rules 3 and 4.

        Raises:
            StoreError: the database failed.
        """
        status, at = (PENDING, retry_at_s) if retry_at_s is not None else (DEAD, now_s)
        return self._run(FAIL, (status, at, error[:500], key, owner)) == 1

    def stats(self, now_s: float) -> OutboxStats:
        """Counts for operators.

        Raises:
            StoreError: the database failed.
        """
        return stats_from_rows(self._query(STATS, ()), now_s)

    def rows(self) -> list[tuple[str, str, int, float, float | None]]:
        """Every row: (key, status, attempts, created_at, delivered_at), oldest first.

        Raises:
            StoreError: the database failed.
        """
        return [
            (str(r[0]), str(r[1]), int(r[2]), float(r[3]), r[4])
            for r in self._query(
                "SELECT idempotency_key, status, attempts, created_at, delivered_at "
                "FROM crm_outbox ORDER BY created_at, idempotency_key",
                (),
            )
        ]

    def entity_rows(self, entity: str) -> list[tuple[str, int, str]]:
        """Rule 6's rows of ``entity``: (key, entity_seq, status), in recorded order.

        Raises:
            StoreError: the database failed.
        """
        return [
            (str(r[0]), int(r[1]), str(r[2]))
            for r in self._query(
                "SELECT idempotency_key, entity_seq, status FROM crm_outbox "
                "WHERE entity = ? ORDER BY entity_seq",
                (entity,),
            )
        ]

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock, self._db.transaction():
                return self._db.execute(_pg(sql), args).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._db.close()


__all__ = ["DEAD", "OutboxStats", "PostgresOutbox"]
