"""Time each ``voicerail ops`` answer over one million events, on SQLite and PostgreSQL.

The events come from the seeded call generator (``voicerail.testing.call_generator``:
about 30 events per call, two weeks of calls, ~18% failed, router attempts with
costs), written with each store's own schema and indexes; PostgreSQL is a
throwaway server started from Debian's binaries (skipped when absent). Target:
every answer under one second. Usage::

    .venv/bin/python bench/ops_queries.py [--events 1000000] [--repeat 3] [--only sqlite] [--cli]

Each answer is timed in process (the queries and the arithmetic, best of
``--repeat``); with ``--cli`` also as a whole ``voicerail ops … --json`` command
(a new Python process: interpreter start, imports, the answer, JSON output).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from voicerail.events.store import SQLiteEventStore, SQLReader, call_row, event_row
from voicerail.ops import reports
from voicerail.testing.call_generator import events_for, plan_calls

NOW = 1_800_000_000.0
WEEK_S = reports.WEEK_S
CHUNK_CALLS = 5_000


def simulated_rows(
    num_events: int, seed: int = 1
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Chunks of (call rows, event rows) until ``num_events`` events."""
    written = 0
    calls: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    # Enough plans for the target; stop at the first call that reaches it.
    for plan in plan_calls(seed, num_events, start_s=NOW - 2 * WEEK_S, end_s=NOW):
        call, call_events = events_for(plan)
        calls.append(call_row(call))
        events.extend(event_row(e) for e in call_events)
        written += len(call_events)
        if len(calls) >= CHUNK_CALLS or written >= num_events:
            yield calls, events
            calls, events = [], []
        if written >= num_events:
            return


def fill_sqlite(path: Path, num_events: int) -> tuple[int, int]:
    """Write the simulated calls into a SQLite event store; (calls, events)."""
    SQLiteEventStore(path).close()  # schema and indexes, as the server makes them
    import sqlite3

    db = sqlite3.connect(path)
    num_calls = num_rows = 0
    for calls, events in simulated_rows(num_events):
        db.executemany("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?)", calls)
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", events)
        num_calls, num_rows = num_calls + len(calls), num_rows + len(events)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    store = SQLiteEventStore(path)
    store.rebuild_costs()  # the rollup append() keeps, for rows written around it
    store.close()
    return num_calls, num_rows


def fill_postgres(url: str, num_events: int) -> tuple[int, int]:
    """Write the simulated calls into a PostgreSQL event store with COPY."""
    import psycopg

    from voicerail.events.postgres import PostgresEventStore

    PostgresEventStore(url).close()  # schema and indexes, as the server makes them
    num_calls = num_rows = 0
    with psycopg.connect(url) as db:
        for calls, events in simulated_rows(num_events):
            with db.cursor() as cur:
                with cur.copy("COPY calls FROM STDIN") as copy:
                    for row in calls:
                        copy.write_row(row)
                with cur.copy("COPY events FROM STDIN") as copy:
                    for row in events:
                        copy.write_row(row)
            num_calls, num_rows = num_calls + len(calls), num_rows + len(events)
        db.commit()
    store = PostgresEventStore(url)
    store.rebuild_costs()  # the rollup append() keeps, for rows written around it
    store.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")
    return num_calls, num_rows


def answers(db: SQLReader) -> dict[str, Callable[[], Any]]:
    """Each ``voicerail ops`` answer (as the CLI computes it), by command line."""
    return {
        "failures --window 15m": lambda: reports.failures(db, window_s=900, now_s=NOW),
        "failures --window 1d": lambda: reports.failures(db, window_s=86400, now_s=NOW),
        "cost --weeks 2": lambda: reports.cost(db, weeks=2, now_s=NOW),
        "last-failed -n 10": lambda: reports.last_failed(db, n=10),
        "halve (7d)": lambda: reports.halve(db, window_s=WEEK_S, now_s=NOW),
        "dashboard call list": lambda: _call_list(db),
    }


def _call_list(db: SQLReader) -> Any:
    from voicerail.events import queries

    return queries.find_calls(
        db, queries.CallFilter(outcome="failed", provider="elevenlabs", since_s=NOW - 86400)
    )


def time_answers(label: str, db: SQLReader, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds per answer; prints a table."""
    timings = {}
    print(f"{'answer (' + label + ')':<34}{'best, ms':>10}{'first, ms':>11}")
    for name, answer in answers(db).items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            answer()
            times.append(time.perf_counter() - started)
        timings[name] = min(times)
        verdict = "" if max(times) < 1.0 else "  OVER 1 s"
        print(f"{name:<34}{min(times) * 1000:>10.1f}{times[0] * 1000:>11.1f}{verdict}")
    return timings


CLI_ANSWERS = (
    ("failures", "--window", "15m"),
    ("failures", "--window", "1d"),
    ("cost", "--weeks", "2"),
    ("last-failed", "-n", "10"),
    ("halve",),
)


def time_cli(label: str, where: list[str]) -> dict[str, float]:
    """Wall time of each ``voicerail ops`` command as a new process; prints a table."""
    timings = {}
    print(f"{'voicerail ops … --json (' + label + ')':<34}{'wall, ms':>10}")
    for argv in CLI_ANSWERS:
        command = [sys.executable, "-m", "voicerail.cli", "ops", *argv, "--json"]
        started = time.perf_counter()
        subprocess.run([*command, *where, "--now", str(NOW)], check=True, capture_output=True)
        timings[" ".join(argv)] = time.perf_counter() - started
        print(f"{' '.join(argv):<34}{timings[' '.join(argv)] * 1000:>10.0f}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    parser.add_argument("--cli", action="store_true", help="also time whole ops commands")
    args = parser.parse_args()
    figures: dict[str, Any] = {"events": args.events}
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.sqlite3"
            started = time.perf_counter()
            num_calls, num_events = fill_sqlite(path, args.events)
            print(
                f"SQLite: {num_events} events / {num_calls} calls written in "
                f"{time.perf_counter() - started:.1f} s"
            )
            store = SQLiteEventStore(path)
            figures["sqlite"] = time_answers("SQLite", store, args.repeat)
            store.close()
            if args.cli:
                figures["sqlite_cli"] = time_cli("SQLite", ["--data-dir", tmp])
    if args.only in (None, "postgresql"):
        figures["postgresql"] = _postgres(args.events, args.repeat, cli=args.cli)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def _postgres(num_events: int, repeat: int, *, cli: bool) -> dict[str, Any] | None:
    from voicerail.events.postgres import PostgresEventStore
    from voicerail.testing.postgres import PostgresUnavailable, temporary_postgres

    settings = {"shared_buffers": "256MB", "work_mem": "32MB"}
    try:
        server = temporary_postgres(settings)
        url = server.__enter__()
    except PostgresUnavailable as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    try:
        started = time.perf_counter()
        num_calls, written = fill_postgres(url, num_events)
        print(
            f"PostgreSQL: {written} events / {num_calls} calls written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        store = PostgresEventStore(url)
        with contextlib.redirect_stderr(io.StringIO()):
            timings: dict[str, Any] = time_answers("PostgreSQL", store, repeat)
        store.close()
        if cli:
            timings["cli"] = time_cli("PostgreSQL", ["--database-url", url])
        return timings
    finally:
        server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
