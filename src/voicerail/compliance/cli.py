"""``voicerail erase``, ``voicerail audit verify``, ``voicerail gates`` (``gates_cli.py``)
and ``voicerail ops retention``.

Every command that touches call data writes an audit entry
(``<data dir>/audit.sqlite3``, ``compliance/audit.py``) naming the operating
system user as ``cli:<user>``. Exit status: 0 done / verified, 1 the audit log
did not verify, 2 a store or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from voicerail.compliance.audit import AuditLog, phone_ref
from voicerail.compliance.policy import deployment_compliance
from voicerail.compliance.stores import apply_retention, erase_phone, receipt_json
from voicerail.errors import ConfigError, StoreError

#: The top-level commands this module adds.
COMMANDS = ("erase", "audit", "gates", "review")


def add_parser(sub: Any) -> None:
    """Add ``erase``, ``audit`` and ``gates`` to the main parser's subparsers."""
    erase = sub.add_parser("erase", help="remove one caller from every store, with a receipt")
    erase.add_argument("--phone", required=True, help="the caller's number, e.g. +15551230000")
    erase.add_argument("--data-dir", type=Path, default=None)
    erase.add_argument("--redis-url", default=None, help="or $VOICERAIL_REDIS_URL")
    erase.add_argument("--redis-prefix", default="voicerail:")
    erase.add_argument("--database-url", default=None, help="or $VOICERAIL_DATABASE_URL")
    erase.add_argument("--json", action="store_true")
    audit = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    for name, text in (("verify", "check the chain"), ("digest", "sign the chain's head")):
        cmd = audit_sub.add_parser(name, help=text)
        cmd.add_argument("--data-dir", type=Path, default=None)
        cmd.add_argument("--json", action="store_true")
    review = sub.add_parser("review", help="human QA: the review sheet and reviewers' labels")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    export = review_sub.add_parser("export", help="the calls to review, as CSV")
    export.add_argument("--csv", type=Path, required=True, help="where to write the sheet")
    export.add_argument("--days", type=float, default=7.0)
    label = review_sub.add_parser("label", help="record a reviewer's label (an event)")
    label.add_argument("call_id")
    label.add_argument("label", help="ok, misheard, wrong_intent, bad_answer, ...")
    label.add_argument("--reviewer", default=None, help="default: this user")
    for cmd in (export, label):
        cmd.add_argument("--data-dir", type=Path, default=None)
        cmd.add_argument("--agent", type=Path, default=None, help="its success labels")
        cmd.add_argument("--config", type=Path, default=None, help="the deployment file")
        cmd.add_argument("--now", type=float, default=None, help=argparse.SUPPRESS)
    from voicerail.compliance.gates_cli import add_gates_parser

    add_gates_parser(sub)


def add_retention_parser(ops_sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``ops retention`` and ``ops review`` (called by ``ops/cli.py``)."""
    retention = ops_sub.add_parser(
        "retention", parents=[common], help="delete what is past its retention, and say what"
    )
    retention.add_argument("--config", type=Path, default=None, help="the deployment file")
    review = ops_sub.add_parser("review", parents=[common], help="the weekly QA report")
    review.add_argument("--week", action="store_true", help="the last 7 days (the default)")
    review.add_argument("--agent", type=Path, default=None, help="its success labels")
    review.add_argument("--out", type=Path, default=None, help="write review.html/.json here")


def _success_labels(agent: Path | None) -> dict[str, str]:
    if agent is None:
        return {}
    from voicerail.compliance.policy import policy_of_agent_file

    return dict(policy_of_agent_file(agent).evaluation.success)


def run_review(args: argparse.Namespace, data_dir: Path, now_s: float) -> int:
    """``ops review --week``: the weekly report (text, ``--json``, or files in ``--out``)."""
    from voicerail.compliance.review import render_html, weekly_review
    from voicerail.ops.cli import open_reader

    url = args.database_url or os.environ.get("VOICERAIL_DATABASE_URL")
    try:
        success = _success_labels(args.agent)
        with open_reader(data_dir, url) as db:
            review = weekly_review(db, now_s=now_s, success=success)
    except (StoreError, ConfigError) as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "review.json").write_text(json.dumps(review, indent=1), encoding="utf-8")
        (args.out / "review.html").write_text(render_html(review), encoding="utf-8")
    if args.json:
        print(json.dumps(review, indent=2))
        return 0
    week, change = review["week"], review["change"]
    recognition = _pct(week["recognition_accuracy"])
    print(f"week: {week['calls']} calls ({change['calls']:+d}), completion "
          f"{_pct(week['completion'])} ({_pp(change['completion'])}), latency p95 "
          f"{_ms(week['latency_ms']['p95'])}, recognition {recognition}")  # fmt: skip
    for intent, rate in week["completion_by_intent"].items():
        print(f"  {intent}: {_pct(rate)}")
    for cause, count in week["top_failure_causes"]:
        print(f"  failure: {cause} ({count})")
    return 0


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.0f} pp"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _review(args: argparse.Namespace) -> int:
    from voicerail.compliance.evaluation import review_sheet, sample
    from voicerail.compliance.review import label_event, window_calls
    from voicerail.events.store import SQLiteEventStore
    from voicerail.ops.cli import open_reader

    data_dir = _data_dir(args)
    now = args.now if args.now is not None else time.time()
    audit = AuditLog(data_dir / "audit.sqlite3")
    try:
        if args.review_command == "label":
            reviewer = args.reviewer or _user()
            event = label_event(args.call_id, args.label, reviewer=reviewer, at_wall=now)
            store = SQLiteEventStore(data_dir / "events.sqlite3")
            try:
                if store.call(args.call_id) is None:
                    raise ValueError(f"no call {args.call_id!r}")
                store.append(event)
            finally:
                store.close()
            audit.append(f"cli:{reviewer}", "call.labeled", args.call_id,
                         {"label": args.label}, at_wall=now)  # fmt: skip
            print(f"{args.call_id}: {args.label}")
            return 0
        rules = deployment_compliance(args.config).sampling
        if rules is None:
            raise ConfigError(
                "no sampling rules", source=str(args.config), field="compliance.sampling"
            )
        with open_reader(data_dir, None) as db:
            calls = window_calls(db, now - args.days * 86400.0, now, _success_labels(args.agent))
        chosen = sample([ev for _, ev, _ in calls], rules)
        args.csv.write_text(review_sheet(chosen), encoding="utf-8")
        audit.append(f"cli:{_user()}", "calls.export", str(args.csv),
                     {"calls": len(chosen)}, at_wall=now)  # fmt: skip
        print(f"{len(chosen)} of {len(calls)} calls to review: {args.csv}")
        return 0
    finally:
        audit.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


def _data_dir(args: argparse.Namespace) -> Path:
    from voicerail.config import default_data_dir

    return Path(args.data_dir or default_data_dir())


def run(args: argparse.Namespace) -> int:
    """Execute ``erase``, ``audit`` or ``gates``; returns the exit status."""
    try:
        if args.command == "erase":
            return _erase(args)
        if args.command == "review":
            return _review(args)
        if args.command == "gates":
            from voicerail.compliance.gates_cli import run_gates

            return run_gates(args)
        return _audit(args)
    except (StoreError, ConfigError, ValueError) as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2


def _erase(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    redis_url = args.redis_url or os.environ.get("VOICERAIL_REDIS_URL")
    database_url = args.database_url or os.environ.get("VOICERAIL_DATABASE_URL")
    calls: set[str] = set()
    sids: set[str] = set()
    removed: dict[str, int] = {}
    if database_url:
        from voicerail.compliance.stores_pg import erase_phone_pg

        pg_receipt, calls, sids = erase_phone_pg(args.phone, database_url)
        removed = pg_receipt.removed
    receipt = erase_phone(args.phone, data_dir, redis_url, args.redis_prefix,
                          known_calls=calls, known_sids=sids)  # fmt: skip
    for store, count in removed.items():
        receipt.add(store, count)
    log = AuditLog(data_dir / "audit.sqlite3")
    try:
        entry = log.append(
            f"cli:{_user()}", "erasure", phone_ref(args.phone), receipt.removed, at_wall=time.time()
        )
    finally:
        log.close()
    if args.json:
        body = json.loads(receipt_json(receipt))
        print(json.dumps({**body, "audit_seq": entry.seq}, sort_keys=True))
        return 0
    print(f"erased {phone_ref(args.phone)}: {receipt.total} rows")
    for line in receipt.lines():
        print(f"  {line}")
    print(f"audit entry {entry.seq}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    log = AuditLog(_data_dir(args) / "audit.sqlite3")
    try:
        if args.audit_command == "digest":
            signed = log.digest(at_wall=time.time())
            print("no key (VOICERAIL_AUDIT_KEY) or no entries" if signed is None else
                  f"signed entry {signed[0]}")  # fmt: skip
            return 0 if signed is not None else 2
        result = log.verify()
    finally:
        log.close()
    if args.json:
        problems = [{"seq": seq, "problem": text} for seq, text in result.problems]
        print(json.dumps({"ok": result.ok, "entries": result.entries,
                          "digests": result.digests, "problems": problems}))  # fmt: skip
    elif result.ok:
        print(f"audit log verified: {result.entries} entries, {result.digests} signed digests")
    else:
        print(f"audit log does NOT verify: {len(result.problems)} problems")
        for seq, text in result.problems:
            print(f"  entry {seq}: {text}")
    return 0 if result.ok else 1


def run_retention(args: argparse.Namespace, data_dir: Path, now_s: float) -> int:
    """``ops retention``: run the job once and print what it removed."""
    try:
        policy = deployment_compliance(args.config)
        days = policy.retention.days()
        receipt = apply_retention(days, data_dir, now=now_s)
        database_url = args.database_url or os.environ.get("VOICERAIL_DATABASE_URL")
        if database_url:
            from voicerail.compliance.stores_pg import apply_retention_pg

            for store, count in apply_retention_pg(days, database_url, now=now_s).removed.items():
                receipt.add(store, count)
        log = AuditLog(data_dir / "audit.sqlite3")
        try:
            log.append(f"cli:{_user()}", "retention", str(data_dir), receipt.removed, at_wall=now_s)
        finally:
            log.close()
    except (StoreError, ConfigError) as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**json.loads(receipt_json(receipt)), "days": days}, sort_keys=True))
        return 0
    unset = [c for c in ("audio", "transcripts", "events", "crm_writes") if c not in days]
    print(f"retention: {receipt.total} rows removed")
    for line in receipt.lines():
        print(f"  {line}")
    if unset:
        print(f"  not set (kept forever): {', '.join(unset)}")
    return 0


def audit_read(data_dir: Path, call_id: str) -> None:
    """``calls show`` read a call: one audit entry (never fails the command)."""
    try:
        log = AuditLog(data_dir / "audit.sqlite3")
        try:
            log.append(f"cli:{_user()}", "call.read", call_id, at_wall=time.time())
        finally:
            log.close()
    except StoreError as exc:
        print(f"voicerail: warning: audit entry not written: {exc}", file=sys.stderr)
