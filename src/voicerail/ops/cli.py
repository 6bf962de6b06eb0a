"""``voicerail ops``: the four questions and the credentials, in text or ``--json``.

Subcommands::

    voicerail ops failures    [--window 15m]   failure rate by provider and stage, vs before
    voicerail ops cost        [--weeks 2]      cost per call and per converted call by week
    voicerail ops last-failed [-n 10]          last failed calls, first failing stage marked
    voicerail ops halve       [--window 7d]    the causes whose removal halves failures
    voicerail ops credentials [--check]        registry, expiry, and (with --check) live checks
    voicerail ops outbox                       CRM writes pending, failed, dead-lettered, oldest age
    voicerail ops handoffs    [--window 7d] [--sla 20]  transfers by outcome, time from the
                              agent's request to the outcome, share answered within --sla s

The store is ``<data dir>/events.sqlite3`` (read-only), or PostgreSQL with
``--database-url`` / ``$VOICERAIL_DATABASE_URL``; the outbox is
``<data dir>/outbox.sqlite3`` or the same PostgreSQL database. Exit status: 0 answered, 1 a
credential needs attention (``credentials`` only), 2 no store or a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voicerail.errors import StoreError
from voicerail.events.store import SQLReader
from voicerail.ops import reports


def parse_duration(text: str) -> float:
    """``"15m"`` → 900.0; units s, m, h, d, w.

    Raises:
        argparse.ArgumentTypeError: not a number followed by a unit.
    """
    try:
        return reports.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_parser(sub: Any) -> None:
    """Add ``ops`` and its subcommands to the main parser's subparsers."""
    ops = sub.add_parser("ops", help="answer the four operational questions")
    ops_sub = ops.add_subparsers(dest="ops_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=None)
    common.add_argument(
        "--database-url", default=None, help="PostgreSQL URL (or $VOICERAIL_DATABASE_URL)"
    )
    common.add_argument("--json", action="store_true")
    common.add_argument("--now", type=float, default=None, help=argparse.SUPPRESS)
    failures = ops_sub.add_parser("failures", parents=[common], help="failure rate by provider")
    failures.add_argument("--window", type=parse_duration, default=900.0)
    cost = ops_sub.add_parser("cost", parents=[common], help="cost per converted call by week")
    cost.add_argument("--weeks", type=int, default=2)
    last = ops_sub.add_parser("last-failed", parents=[common], help="the last failed calls")
    last.add_argument("-n", type=int, default=10)
    halve = ops_sub.add_parser("halve", parents=[common], help="what would halve failures")
    halve.add_argument("--window", type=parse_duration, default=7 * 86400.0)
    creds = ops_sub.add_parser("credentials", parents=[common], help="credential expiry")
    creds.add_argument(
        "--credentials", type=Path, default=None, help="credentials file ($VOICERAIL_CREDENTIALS)"
    )
    creds.add_argument("--check", action="store_true", help="ask each provider live")
    ops_sub.add_parser("outbox", parents=[common], help="the CRM outbox: pending, dead-lettered")
    ops_sub.add_parser(
        "rebuild-rollups", parents=[common], help="recompute the event store's rollups"
    )
    handoffs = ops_sub.add_parser("handoffs", parents=[common], help="handoff SLA by outcome")
    handoffs.add_argument("--window", type=parse_duration, default=7 * 86400.0)
    handoffs.add_argument(
        "--sla", type=float, default=20.0, help="seconds within which a human should answer"
    )
    from voicerail.compliance.cli import add_retention_parser

    add_retention_parser(ops_sub, common)


class _SQLiteReader:
    """A read-only ``SQLReader`` on an event store file (no writer thread)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, tuple(args)))
        except sqlite3.Error as exc:
            raise StoreError(f"event store read failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()


@contextmanager
def open_reader(
    data_dir: Path, database_url: str | None, outbox: bool = False
) -> Iterator[SQLReader]:
    """The event store (or with ``outbox`` the CRM outbox) to read: PostgreSQL when a
    URL is given, else the data dir's file.

    Raises:
        StoreError: no store there, or it cannot be opened.
    """
    if database_url:
        from voicerail.events.postgres import PostgresReader

        pg = PostgresReader(database_url)
        try:
            yield pg
        finally:
            pg.close()
        return
    path = data_dir / ("outbox.sqlite3" if outbox else "events.sqlite3")
    if not path.exists():
        raise StoreError(f"no {'outbox' if outbox else 'event store'} at {path}")
    reader = _SQLiteReader(path)
    try:
        yield reader
    finally:
        reader.close()


def answer(db: SQLReader, args: argparse.Namespace, now_s: float) -> Any:
    """The JSON-ready answer to the ``ops`` subcommand in ``args``."""
    if args.ops_command == "failures":
        return reports.failures(db, window_s=args.window, now_s=now_s)
    if args.ops_command == "cost":
        return reports.cost(db, weeks=args.weeks, now_s=now_s)
    if args.ops_command == "last-failed":
        return reports.last_failed(db, n=args.n)
    if args.ops_command == "outbox":
        from voicerail.crm.outbox import read_stats

        return read_stats(db.fetch, now_s).to_dict()
    if args.ops_command == "handoffs":
        from voicerail.ops.handoffs import handoff_sla

        return handoff_sla(db, window_s=args.window, now_s=now_s, sla_s=args.sla)
    return reports.halve(db, window_s=args.window, now_s=now_s)


def run(args: argparse.Namespace, default_data_dir: Path | None = None) -> int:
    """Execute an ``ops`` subcommand; returns the exit status."""
    from voicerail.config import default_data_dir as configured_data_dir

    now_s = args.now if args.now is not None else time.time()
    if args.ops_command == "credentials":
        return _credentials(args, now_s)
    data_dir = args.data_dir or default_data_dir or configured_data_dir()
    if args.ops_command == "retention":
        from voicerail.compliance.cli import run_retention

        return run_retention(args, Path(data_dir), now_s)
    if args.ops_command == "review":
        from voicerail.compliance.cli import run_review

        return run_review(args, Path(data_dir), now_s)
    url = args.database_url or os.environ.get("VOICERAIL_DATABASE_URL")
    if args.ops_command == "rebuild-rollups":
        return rebuild_rollups(data_dir, url, as_json=args.json)
    try:
        with open_reader(data_dir, url, outbox=args.ops_command == "outbox") as db:
            result = answer(db, args, now_s)
    except StoreError as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif args.ops_command == "outbox":
        print(
            f"CRM outbox: {result['pending']} pending ({result['failed']} failed, waiting to "
            f"retry), {result['dead_lettered']} dead-lettered, {result['delivered']} delivered; "
            f"oldest pending {result['oldest_pending_age_s']:.0f} s"
            + (
                f"; {result['superseded']} superseded by a newer write"
                if result.get("superseded")
                else ""
            )
        )
    elif args.ops_command == "handoffs":
        from voicerail.ops.handoffs import format_sla

        print(format_sla(result))
    else:
        from voicerail.ops.text import print_answer

        print_answer(args.ops_command, result)
    return 0


def rebuild_rollups(data_dir: Path, database_url: str | None, *, as_json: bool = False) -> int:
    """``voicerail ops rebuild-rollups``: recompute the rollups from the events (issue 16).

    Opens the store as the server does (creating missing tables), so run it with the
    servers up or down; returns the exit status (2 when the store cannot be opened
    or refuses the rebuild).
    """
    from voicerail.events.store import SQLiteEventStore

    started = time.perf_counter()
    path = data_dir / "events.sqlite3"
    try:
        store: Any
        if database_url:
            from voicerail.events.postgres import PostgresEventStore

            store = PostgresEventStore(database_url)
        elif path.exists():
            store = SQLiteEventStore(path)
        else:
            raise StoreError(f"no event store at {path}")
        try:
            if not store.rebuilt_on_open:
                store.rebuild_rollups()
            [(events,)] = store.fetch("SELECT COUNT(*) FROM events")
        finally:
            store.close()
    except StoreError as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    if as_json:
        print(json.dumps({"events": int(events), "seconds": seconds}))
    else:
        print(f"rollups rebuilt from {int(events)} events in {seconds:.1f} s")
    return 0


def _credentials(args: argparse.Namespace, now_s: float) -> int:
    # Imported here: httpx and asyncio cost a third of a second the other answers skip.
    import asyncio

    import httpx

    from voicerail.ops.credentials import CredentialStatus, check_all, load_registry

    path = args.credentials or os.environ.get("VOICERAIL_CREDENTIALS")
    registry = load_registry(path)

    async def statuses() -> list[CredentialStatus]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            return await check_all(registry, client, now_s=now_s, live=args.check)

    result = asyncio.run(statuses())
    if args.json:
        print(json.dumps({"credentials": [s.to_dict() for s in result]}, indent=2))
    else:
        from voicerail.ops.text import print_credentials

        print_credentials(result)
    needs_attention = any(s.state in ("missing", "refused", "expired", "expiring") for s in result)
    return 1 if needs_attention else 0
