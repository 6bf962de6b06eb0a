"""The audit log: who touched call data or configuration, in a hash chain.

Rules:

1. Every entry carries ``prev_hash``, the hash of the entry before it (64 zeros
   for the first), and its own ``hash``: SHA-256 over the previous hash and the
   entry's canonical JSON (sequence number, time, actor, action, target,
   detail; keys sorted, no spaces). Editing an entry breaks its hash; removing
   or reordering entries breaks a link or the sequence (1, 2, 3, ...).
2. A *digest* signs the chain's head: HMAC-SHA256 with the deployment's key over
   ``"{seq}:{hash}"``. Removing the newest entries is found by the digest that
   names one of them; entries newer than the last digest are covered by the
   chain alone (take digests often: ``voicerail serve`` takes one per hour).
3. Appending reads the head and writes the entry in one ``BEGIN IMMEDIATE``
   transaction, so that several worker processes never fork the chain.
4. :meth:`AuditLog.verify` reports every problem with the sequence number it
   was found at; it never stops at the first.

Entries name what was touched (a call id, a phone number's hash, a config
file), never personal data itself: an erasure names the phone by
:func:`phone_ref`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicerail.errors import StoreError

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
  seq INTEGER PRIMARY KEY,
  at_wall REAL NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_digests (
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  signature TEXT NOT NULL,
  at_wall REAL NOT NULL
);
"""


@dataclass(frozen=True)
class AuditEntry:
    """One audited action.

    Attributes:
        seq: position in the chain, from 1.
        at_wall: Unix time, seconds.
        actor: who: ``api:<account>``, ``dashboard:<account>``, ``cli:<user>``, ``system``.
        action: what: ``call.read``, ``calls.list``, ``config.changed``, ``erasure``,
            ``retention``.
        target: what it was done to (a call id, a file, a phone reference).
        detail: safe-to-log structured detail.
        prev_hash: the previous entry's hash (rule 1).
        hash: this entry's hash (rule 1).
    """

    seq: int
    at_wall: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass
class Verification:
    """What :meth:`AuditLog.verify` found.

    Attributes:
        entries: entries read.
        digests: digests checked.
        problems: ``(seq, reason)`` for each broken rule, in chain order.
    """

    entries: int = 0
    digests: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.problems


def entry_hash(
    prev_hash: str,
    seq: int,
    at_wall: float,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> str:
    """Rule 1's hash of one entry."""
    body = json.dumps(
        {"seq": seq, "at": repr(at_wall), "actor": actor, "action": action,
         "target": target, "detail": detail},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def phone_ref(phone: str) -> str:
    """A phone number as an audit target: a short hash, not the number."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return "phone:" + hashlib.sha256(digits.encode()).hexdigest()[:16]


class AuditLog:
    """The hash-chained log in one SQLite file (rules 1-4).

    Args:
        path: the file (``<data dir>/audit.sqlite3``).
        key: the digest key; ``VOICERAIL_AUDIT_KEY`` when None; without either,
            digests are neither written nor checked.

    Raises:
        StoreError: the file cannot be opened.
    """

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        env = os.environ.get("VOICERAIL_AUDIT_KEY")
        self._key = key or (env.encode() if env else None)
        try:
            self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"audit log cannot be opened: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any] | None = None,
        *,
        at_wall: float,
    ) -> AuditEntry:
        """Add one entry at the head of the chain (rule 3).

        Raises:
            StoreError: the write failed.
        """
        detail = dict(detail or {})
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                digest = entry_hash(prev, seq, at_wall, actor, action, target, detail)
                self._db.execute(
                    "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, at_wall, actor, action, target, _json(detail), prev, digest),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"audit log write failed: {exc}") from exc
        return AuditEntry(seq, at_wall, actor, action, target, detail, prev, digest)

    def digest(self, *, at_wall: float) -> tuple[int, str] | None:
        """Sign the chain's head (rule 2); None without a key or entries.

        Raises:
            StoreError: the write failed.
        """
        if self._key is None:
            return None
        row = self._db.execute(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        seq, head = int(row[0]), str(row[1])
        try:
            self._db.execute(
                "INSERT INTO audit_digests VALUES (?, ?, ?, ?)",
                (seq, head, self._sign(seq, head), at_wall),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"audit digest write failed: {exc}") from exc
        return seq, head

    def entries(self) -> list[AuditEntry]:
        """Every entry, in stored sequence order."""
        rows = self._db.execute("SELECT * FROM audit_log ORDER BY rowid").fetchall()
        return [
            AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
            for r in rows
        ]

    def verify(self) -> Verification:
        """Check rules 1 and 2 over the whole log (rule 4)."""
        result = Verification()
        prev, expected_seq = GENESIS, 1
        hashes: dict[int, str] = {}
        for entry in sorted(self.entries(), key=lambda e: e.seq):
            result.entries += 1
            if entry.seq != expected_seq:
                result.problems.append((entry.seq, f"expected entry {expected_seq}: removed"))
            if entry.prev_hash != prev:
                result.problems.append((entry.seq, "does not link to the entry before it"))
            recomputed = entry_hash(
                entry.prev_hash, entry.seq, entry.at_wall, entry.actor, entry.action,
                entry.target, entry.detail,
            )  # fmt: skip
            if recomputed != entry.hash:
                result.problems.append((entry.seq, "edited: its hash does not match"))
            hashes[entry.seq] = entry.hash
            prev, expected_seq = entry.hash, entry.seq + 1
        if self._key is not None:
            for seq, head, signature in self._db.execute(
                "SELECT seq, hash, signature FROM audit_digests ORDER BY rowid"
            ):
                result.digests += 1
                if not hmac.compare_digest(signature, self._sign(int(seq), head)):
                    result.problems.append((int(seq), "digest signature is wrong"))
                elif hashes.get(int(seq)) != head:
                    result.problems.append((int(seq), "signed head is missing or changed"))
        return result

    def _sign(self, seq: int, head: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{seq}:{head}".encode(), hashlib.sha256).hexdigest()


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
