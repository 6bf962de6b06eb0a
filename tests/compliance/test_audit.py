"""The hash-chained audit log: edits, removals and reorderings are all found."""

from __future__ import annotations

import itertools
import sqlite3
import threading

from voicerail.compliance.audit import GENESIS, AuditLog, phone_ref


def filled(tmp_path, n: int = 5, key: bytes | None = b"k") -> AuditLog:
    log = AuditLog(tmp_path / "audit.sqlite3", key=key)
    for i in range(1, n + 1):
        log.append("cli:ops", "call.read", f"vr_{i}", {"n": i}, at_wall=1000.0 + i)
    return log


def sql(tmp_path, statement: str) -> None:
    with sqlite3.connect(tmp_path / "audit.sqlite3") as db:
        db.execute(statement)


def test_an_untouched_log_verifies_and_links_from_genesis(tmp_path):
    log = filled(tmp_path)
    entries = log.entries()
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    result = log.verify()
    assert result.ok and result.entries == 5


def test_an_edited_entry_is_found(tmp_path):
    log = filled(tmp_path)
    sql(tmp_path, "UPDATE audit_log SET target = 'vr_other' WHERE seq = 3")
    assert log.verify().problems == [(3, "edited: its hash does not match")]


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(tmp_path):
    log = filled(tmp_path)
    sql(tmp_path, "UPDATE audit_log SET hash = 'f' || substr(hash, 2) WHERE seq = 2")
    problems = log.verify().problems
    assert (2, "edited: its hash does not match") in problems
    assert (3, "does not link to the entry before it") in problems


def test_a_removed_entry_is_found(tmp_path):
    log = filled(tmp_path)
    sql(tmp_path, "DELETE FROM audit_log WHERE seq = 2")
    problems = log.verify().problems
    assert (3, "expected entry 2: removed") in problems
    assert (3, "does not link to the entry before it") in problems


def test_reordered_entries_are_found(tmp_path):
    log = filled(tmp_path)
    sql(tmp_path, "UPDATE audit_log SET seq = -seq WHERE seq IN (2, 3)")
    sql(tmp_path, "UPDATE audit_log SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq < 0")
    problems = log.verify().problems
    assert (2, "edited: its hash does not match") in problems
    assert (2, "does not link to the entry before it") in problems


def test_removing_the_newest_entries_is_found_by_the_signed_digest(tmp_path):
    log = filled(tmp_path)
    assert log.digest(at_wall=2000.0) == (5, log.entries()[-1].hash)
    sql(tmp_path, "DELETE FROM audit_log WHERE seq >= 4")
    assert log.verify().problems == [(5, "signed head is missing or changed")]


def test_a_forged_digest_is_found(tmp_path):
    log = filled(tmp_path)
    log.digest(at_wall=2000.0)
    sql(tmp_path, "UPDATE audit_digests SET signature = 'x'")
    assert log.verify().problems == [(5, "digest signature is wrong")]


def test_without_a_key_there_are_no_digests(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICERAIL_AUDIT_KEY", raising=False)
    log = filled(tmp_path, key=None)
    assert log.digest(at_wall=1.0) is None and log.verify().digests == 0


def test_writers_in_parallel_never_fork_the_chain(tmp_path):
    AuditLog(tmp_path / "audit.sqlite3").close()

    def write(worker: int) -> None:
        log = AuditLog(tmp_path / "audit.sqlite3", key=b"k")
        for i in range(20):
            log.append(f"worker:{worker}", "call.read", f"vr_{i}", at_wall=float(i))
        log.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = AuditLog(tmp_path / "audit.sqlite3", key=b"k").verify()
    assert result.ok and result.entries == 80


def test_a_phone_reference_is_not_the_number():
    ref = phone_ref("+1 555 010 9999")
    assert ref == phone_ref("+15550109999") and "5550109999" not in ref
