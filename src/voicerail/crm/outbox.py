"""The transactional outbox: every CRM write is recorded with the call's state, then relayed.

Rules kept here (``outbox_pg.py`` keeps the same ones on PostgreSQL):

1. :meth:`SQLiteOutbox.record` writes the call's state and the call's CRM writes
   in *one* transaction: either the state moved and its writes are queued, or
   neither happened. A write whose idempotency key is already queued is not
   queued again (``INSERT ... ON CONFLICT DO NOTHING``): replays from failover,
   barge-in after a tool call or a worker restart add nothing.
2. A relay *claims* due rows before delivering them: it sets a lease (owner and
   expiry) and counts the claim in one transaction. On SQLite the claim runs
   under ``BEGIN IMMEDIATE`` (one writer at a time); on PostgreSQL under
   ``FOR UPDATE SKIP LOCKED``, so relays never wait on each other's rows. A
   relay killed mid-batch leaves leases that expire; another relay re-claims.
3. Completing or failing a row is *fenced* by the lease owner: a relay whose
   lease expired and was taken over cannot overwrite the new owner's outcome.
   A re-delivery that results is harmless: the CRM upserts by the key.
4. A failed attempt is retried with capped exponential backoff (jitter derived
   from the key, so runs are reproducible), no sooner than the CRM's
   ``Retry-After``; a permanent error, or ``max_attempts`` failed attempts, moves
   the row to ``dead`` (dead-lettered) for an operator. Failed attempts are
   counted when a relay reports them, claims when rows are claimed: a relay
   killed mid-batch costs the rows it never reached no attempt, and a row that
   kills every relay that claims it (a poison write) is dead-lettered after
   ``max_claims`` claims.
5. Times are Unix seconds from the injected clock, passed in as ``now_s``.
6. Writes that name an *entity* (``crm/model.py`` rule 3: a booking, then its
   reschedule or cancellation, each carrying the booking's whole state) are
   numbered per entity as recorded (``entity_seq``) and delivered in that
   order, never two at once: a row is claimable only while no other pending
   row of its entity is newer or leased. A newer row *supersedes* the older
   pending rows no relay holds (status ``superseded``, never delivered), so a
   booking cancelled before its first delivery reaches the CRM once, as
   cancelled, and never as a live booking first. A row leased when the newer
   one arrived is delivered first, then the newer one overwrites it. (A relay
   whose lease expired while it was still delivering could land the older
   state last; leases (30 s) outlast a delivery's deadline (10 s) to keep that
   out of reach.)
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from voicerail.crm.model import CRMWrite
from voicerail.errors import StoreError
from voicerail.sqlite_open import open_wal

PENDING, DELIVERED, DEAD, SUPERSEDED = "pending", "delivered", "dead", "superseded"


@dataclass(frozen=True)
class RetryPolicy:
    """Rule 4's numbers.

    Attributes:
        base_s: the first backoff, seconds.
        cap_s: the longest backoff, seconds.
        max_attempts: failed attempts before a row is dead-lettered.
        max_claims: claims before a row is dead-lettered (a poison write).
    """

    base_s: float = 0.5
    cap_s: float = 300.0
    max_attempts: int = 10
    max_claims: int = 30

    def next_attempt_s(
        self, key: str, attempts: int, now_s: float, retry_after_s: float | None
    ) -> float:
        """When the row may be tried again, Unix seconds.

        The backoff is ``min(cap, base * 2**(attempts-1))`` scaled by a factor in
        [0.5, 1) taken from the key's hash (spreads retries, reproducible).
        """
        backoff_s = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        jitter = int.from_bytes(hashlib.sha256(f"{key}:{attempts}".encode()).digest()[:2], "big")
        backoff_s *= 0.5 + 0.5 * jitter / 65536
        return now_s + max(backoff_s, retry_after_s or 0.0)


@dataclass(frozen=True)
class OutboxEntry:
    """One claimed row.

    Attributes:
        write: the write to deliver.
        attempts: this attempt's number (failed attempts before it, plus one).
        claims: claims including this one.
        created_at: when it was recorded, Unix seconds.
    """

    write: CRMWrite
    attempts: int
    claims: int
    created_at: float


@dataclass(frozen=True)
class OutboxStats:
    """What ``voicerail ops outbox`` and ``/metrics`` show.

    Attributes:
        pending: rows not yet delivered and not dead (including failed ones).
        failed: pending rows whose last attempt failed (waiting for a retry).
        dead_lettered: rows given up on (rule 4).
        delivered: rows delivered.
        oldest_pending_age_s: age of the oldest pending row, seconds (0 when none).
        superseded: rows replaced by a newer write of their entity (rule 6).
    """

    pending: int
    failed: int
    dead_lettered: int
    delivered: int
    oldest_pending_age_s: float
    superseded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "pending": self.pending,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "delivered": self.delivered,
            "oldest_pending_age_s": round(self.oldest_pending_age_s, 3),
            "superseded": self.superseded,
        }


class Outbox(Protocol):
    """What the relay and the operators need of an outbox (SQLite or PostgreSQL)."""

    def record(
        self, call_id: str, state_json: str, writes: Sequence[CRMWrite], now_s: float
    ) -> list[bool]:
        """Rule 1; returns, per write, True when it was queued now."""
        ...

    def claim(self, owner: str, limit: int, now_s: float, lease_s: float) -> list[OutboxEntry]:
        """Rule 2: up to ``limit`` due rows, leased to ``owner`` until ``now_s + lease_s``."""
        ...

    def complete(self, key: str, owner: str, now_s: float, crm_id: str) -> bool:
        """Rule 3: mark delivered; False when ``owner`` no longer holds the lease."""
        ...

    def fail(
        self, key: str, owner: str, now_s: float, error: str, retry_at_s: float | None
    ) -> bool:
        """Rule 3/4: schedule a retry at ``retry_at_s``, or dead-letter when None."""
        ...

    def stats(self, now_s: float) -> OutboxStats:
        """Counts for operators."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS call_state (
  call_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS crm_outbox (
  idempotency_key TEXT PRIMARY KEY,
  call_id TEXT NOT NULL,
  action TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  claims INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL,
  lease_owner TEXT,
  lease_until REAL,
  created_at REAL NOT NULL,
  delivered_at REAL,
  last_error TEXT,
  crm_id TEXT
);
CREATE INDEX IF NOT EXISTS crm_outbox_due ON crm_outbox(status, next_attempt_at);
"""
#: Rule 6's columns, added to outboxes created before them (run after SCHEMA).
ENTITY_COLUMNS = (("entity", "TEXT"), ("entity_seq", "INTEGER"))
ENTITY_INDEX = (
    "CREATE INDEX IF NOT EXISTS crm_outbox_entity ON crm_outbox(entity, entity_seq) "
    "WHERE entity IS NOT NULL"
)

# Shared by both dialects (qmark placeholders; outbox_pg.py swaps them for %s).
INSERT_WRITE = (
    "INSERT INTO crm_outbox (idempotency_key, call_id, action, payload, next_attempt_at, "
    "created_at, entity, entity_seq) VALUES (?,?,?,?,?,?,?, "
    "(SELECT COALESCE(MAX(entity_seq), 0) + 1 FROM crm_outbox WHERE entity = ?)) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)
# Rule 6: older pending rows of an entity with a newer pending or delivered row,
# and no live lease, are superseded. Parameter: now_s.
SUPERSEDE = (
    "UPDATE crm_outbox SET status = 'superseded', lease_owner = NULL, lease_until = NULL "
    "WHERE status = 'pending' AND entity IS NOT NULL "
    "AND (lease_until IS NULL OR lease_until <= ?) "
    "AND EXISTS (SELECT 1 FROM crm_outbox AS n WHERE n.entity = crm_outbox.entity "
    "AND n.entity_seq > crm_outbox.entity_seq AND n.status IN ('pending', 'delivered'))"
)
# Rule 2's due rows, with rule 6's order. Parameters: now_s, now_s, now_s.
DUE = (
    "SELECT c.idempotency_key FROM crm_outbox AS c "
    "WHERE c.status = 'pending' AND c.next_attempt_at <= ? "
    "AND (c.lease_until IS NULL OR c.lease_until <= ?) "
    "AND (c.entity IS NULL OR NOT EXISTS (SELECT 1 FROM crm_outbox AS o "
    "WHERE o.entity = c.entity AND o.idempotency_key <> c.idempotency_key "
    "AND o.status = 'pending' AND (o.entity_seq > c.entity_seq OR o.lease_until > ?)))"
)
UPSERT_STATE = (
    "INSERT INTO call_state VALUES (?,?,?) ON CONFLICT (call_id) DO UPDATE "
    "SET state = excluded.state, updated_at = excluded.updated_at"
)
COMPLETE = (
    "UPDATE crm_outbox SET status = 'delivered', delivered_at = ?, crm_id = ?, "
    "attempts = attempts + 1, "
    "lease_owner = NULL, lease_until = NULL WHERE idempotency_key = ? AND lease_owner = ? "
    "AND status = 'pending'"
)
FAIL = (
    "UPDATE crm_outbox SET status = ?, next_attempt_at = ?, last_error = ?, "
    "attempts = attempts + 1, "
    "lease_owner = NULL, lease_until = NULL WHERE idempotency_key = ? AND lease_owner = ? "
    "AND status = 'pending'"
)
STATS = (
    "SELECT status, COUNT(*), SUM(CASE WHEN last_error IS NOT NULL THEN 1 ELSE 0 END), "
    "MIN(created_at) FROM crm_outbox GROUP BY status"
)


def stats_from_rows(rows: Sequence[Sequence[Any]], now_s: float) -> OutboxStats:
    """Turn :data:`STATS` rows into :class:`OutboxStats`."""
    by_status = {str(r[0]): r for r in rows}
    pending = by_status.get(PENDING)
    oldest = float(pending[3]) if pending and pending[3] is not None else None
    return OutboxStats(
        pending=int(pending[1]) if pending else 0,
        failed=int(pending[2] or 0) if pending else 0,
        dead_lettered=int(by_status[DEAD][1]) if DEAD in by_status else 0,
        delivered=int(by_status[DELIVERED][1]) if DELIVERED in by_status else 0,
        oldest_pending_age_s=max(0.0, now_s - oldest) if oldest is not None else 0.0,
        superseded=int(by_status[SUPERSEDED][1]) if SUPERSEDED in by_status else 0,
    )


def read_stats(
    fetch: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]], now_s: float
) -> OutboxStats:
    """Outbox counts through any ``SQLReader.fetch`` (read-only, for ``voicerail ops``)."""
    return stats_from_rows(fetch(STATS, ()), now_s)


def write_params(write: CRMWrite, now_s: float) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT_WRITE` for ``write``."""
    return (
        write.idempotency_key,
        write.call_id,
        str(write.action),
        write.to_json(),
        now_s,
        now_s,
        write.entity,
        write.entity,
    )


class SQLiteOutbox:
    """The outbox and the call state in one SQLite file (rules 1-5).

    Several processes may share the file: claims are serialized by
    ``BEGIN IMMEDIATE`` and protected by leases.

    Args:
        path: the database file (``":memory:"`` for tests).

    Raises:
        StoreError: the file cannot be opened.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(str(path), _create_schema)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the outbox: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"outbox transaction failed: {exc}") from exc

    def record(
        self,
        call_id: str,
        state_json: str,
        writes: Sequence[CRMWrite],
        now_s: float,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[bool]:
        """Rule 1: the call's state and its writes in one transaction.

        Args:
            call_id: the call.
            state_json: the call's state, as the dialog serializes it.
            writes: the writes this step makes (possibly none).
            now_s: Unix seconds.
            also: more statements to run in the same transaction (tests use it
                to fail the transaction half way).

        Returns:
            Per write, True when queued now, False when its key was already queued.

        Raises:
            StoreError: the database failed; nothing was written.
        """
        with self._transaction() as db:
            db.execute(UPSERT_STATE, (call_id, state_json, now_s))
            queued = [
                db.execute(INSERT_WRITE, write_params(w, now_s)).rowcount == 1 for w in writes
            ]
            if also is not None:
                also(db)
        return queued

    def call_state(self, call_id: str) -> str | None:
        """The state last recorded for ``call_id``, None when none.

        Raises:
            StoreError: the database failed.
        """
        rows = self._query("SELECT state FROM call_state WHERE call_id = ?", (call_id,))
        return str(rows[0][0]) if rows else None

    def claim(self, owner: str, limit: int, now_s: float, lease_s: float) -> list[OutboxEntry]:
        """Rule 2. See :class:`Outbox`.

        Raises:
            StoreError: the database failed.
        """
        with self._transaction() as db:
            db.execute(SUPERSEDE, (now_s,))
            rows = list(
                db.execute(
                    "UPDATE crm_outbox SET lease_owner = ?, lease_until = ?, claims = claims + 1 "
                    f"WHERE idempotency_key IN ({DUE} ORDER BY c.next_attempt_at LIMIT ?) "
                    "RETURNING payload, attempts + 1, claims, created_at",
                    (owner, now_s + lease_s, now_s, now_s, now_s, limit),
                )
            )
        return [
            OutboxEntry(CRMWrite.from_json(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in rows
        ]

    def complete(self, key: str, owner: str, now_s: float, crm_id: str) -> bool:
        """Rule 3. See :class:`Outbox`.

        Raises:
            StoreError: the database failed.
        """
        with self._transaction() as db:
            return db.execute(COMPLETE, (now_s, crm_id, key, owner)).rowcount == 1

    def fail(
        self, key: str, owner: str, now_s: float, error: str, retry_at_s: float | None
    ) -> bool:
        """Rules 3 and 4. See :class:`Outbox`.

        Raises:
            StoreError: the database failed.
        """
        status, at = (PENDING, retry_at_s) if retry_at_s is not None else (DEAD, now_s)
        with self._transaction() as db:
            return db.execute(FAIL, (status, at, error[:500], key, owner)).rowcount == 1

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
                "FROM crm_outbox ORDER BY created_at, rowid",
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
            with self._lock:
                return list(self._db.execute(sql, args))
        except sqlite3.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._db.close()


def _create_schema(db: sqlite3.Connection) -> None:
    """The outbox table, with the entity columns added to files made before them."""
    db.executescript(SCHEMA)
    have = {str(r[1]) for r in db.execute("PRAGMA table_info(crm_outbox)")}
    for name, kind in ENTITY_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE crm_outbox ADD COLUMN {name} {kind}")
    db.execute(ENTITY_INDEX)
