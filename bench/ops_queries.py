"""Time each ``voicerail ops`` answer at 1 M events and at ``--events``, on SQLite and
PostgreSQL, side by side with the ratio; and the write rate with rollups on and off.

The events come from the seeded call generator (``voicerail.testing.call_generator``:
about 30 events per call, two weeks of calls, ~18% failed, router attempts with
costs). They are bulk-loaded (``executemany`` / ``COPY``) with each store's own
schema and indexes, and the rollups are then built by the rebuild path
(``voicerail ops rebuild-rollups``), as for a database that predates them.
PostgreSQL is a throwaway server started from Debian's binaries (skipped when
absent). Targets (issue 16): every answer under 200 ms at 10 M events, and the
10 M / 1 M ratio under 2; rollups cost at most 20 % of the write rate. Usage::

    .venv/bin/python bench/ops_queries.py [--events 10000000] [--repeat 3]
        [--only sqlite] [--write-events 100000] [--workers 2] [--cli] [--json out.json]

Answers are asked at a ``now`` 17.5 s past a minute, as a live dashboard would, so
each window has unaligned edges read from raw rows. Each is timed in process (the
queries and the arithmetic, best of ``--repeat``); with ``--cli`` also as a whole
``voicerail ops … --json`` command (a new Python process).

The write rate is events appended through the store's public ``append`` /
``save_call`` until flushed (the writer thread commits batches of 500), with
``--workers`` processes writing one store at once; "append" is the mean time
the call path spends in ``append`` (it queues; it never waits on the database).
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
ASKED_AT = NOW - 17.5  # mid-minute, as a live dashboard asks
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
    store.rebuild_costs()  # the rollups append() keeps, for rows written around it
    store.rebuild_rollups()
    store.close()
    return num_calls, num_rows


def fill_postgres(url: str, num_events: int) -> tuple[int, int]:
    """Write the simulated calls into a PostgreSQL event store with COPY."""
    import psycopg

    from voicerail.events.postgres import PostgresEventStore

    store = PostgresEventStore(url)  # schema and indexes, as the server makes them
    store.prepare_partitions(NOW - 3 * WEEK_S, NOW + WEEK_S)
    store.close()
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
    store.rebuild_costs()  # the rollups append() keeps, for rows written around it
    store.rebuild_rollups()
    store.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")
    return num_calls, num_rows


def answers(db: SQLReader) -> dict[str, Callable[[], Any]]:
    """Each ``voicerail ops`` answer (as the CLI computes it), by command line."""
    return {
        "failures --window 15m": lambda: reports.failures(db, window_s=900, now_s=ASKED_AT),
        "failures --window 1d": lambda: reports.failures(db, window_s=86400, now_s=ASKED_AT),
        "cost --weeks 2": lambda: reports.cost(db, weeks=2, now_s=ASKED_AT),
        "last-failed -n 10": lambda: reports.last_failed(db, n=10),
        "halve (7d)": lambda: reports.halve(db, window_s=WEEK_S, now_s=ASKED_AT),
        "dashboard call list": lambda: _call_list(db),
        "dashboard provider health (1h)": lambda: reports.provider_health(
            db, window_s=3600, now_s=ASKED_AT
        ),
    }


def _call_list(db: SQLReader) -> Any:
    from voicerail.events import queries

    return queries.find_calls(
        db, queries.CallFilter(outcome="failed", provider="elevenlabs", since_s=ASKED_AT - 86400)
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
        print(f"{name:<34}{min(times) * 1000:>10.1f}{times[0] * 1000:>11.1f}")
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
        subprocess.run([*command, *where, "--now", str(ASKED_AT)], check=True, capture_output=True)
        timings[" ".join(argv)] = time.perf_counter() - started
        print(f"{' '.join(argv):<34}{timings[' '.join(argv)] * 1000:>10.0f}")
    return timings


# -- answers at two sizes, side by side ---------------------------------------------


def sizes_for(num_events: int) -> list[int]:
    """1 M as the reference, then ``num_events`` (just one size up to 1 M)."""
    return [1_000_000, num_events] if num_events > 1_000_000 else [num_events]


def sqlite_answers(num_events: int, repeat: int, cli: bool) -> dict[str, Any]:
    """Fill a SQLite store with ``num_events`` and time the answers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.sqlite3"
        started = time.perf_counter()
        num_calls, written = fill_sqlite(path, num_events)
        print(
            f"\nSQLite: {written} events / {num_calls} calls loaded and rolled up in "
            f"{time.perf_counter() - started:.1f} s ({path.stat().st_size / 1e9:.1f} GB)"
        )
        store = SQLiteEventStore(path)
        timings: dict[str, Any] = time_answers(f"SQLite, {written / 1e6:.0f} M", store, repeat)
        store.close()
        if cli:
            timings["cli"] = time_cli("SQLite", ["--data-dir", tmp])
        return timings


def postgres_answers(url: str, num_events: int, repeat: int, cli: bool) -> dict[str, Any]:
    """Fill a fresh PostgreSQL database with ``num_events`` and time the answers."""
    from voicerail.events.postgres import PostgresEventStore

    started = time.perf_counter()
    num_calls, written = fill_postgres(url, num_events)
    print(
        f"\nPostgreSQL: {written} events / {num_calls} calls loaded and rolled up in "
        f"{time.perf_counter() - started:.1f} s"
    )
    store = PostgresEventStore(url)
    with contextlib.redirect_stderr(io.StringIO()):
        timings: dict[str, Any] = time_answers(f"PostgreSQL, {written / 1e6:.0f} M", store, repeat)
    store.close()
    if cli:
        timings["cli"] = time_cli("PostgreSQL", ["--database-url", url])
    return timings


def print_side_by_side(label: str, by_size: dict[int, dict[str, Any]]) -> None:
    """Each answer's best time per size, and the largest / smallest ratio."""
    sizes = sorted(by_size)
    head = "".join(f"{f'{n / 1e6:g} M, ms':>14}" for n in sizes)
    print(f"\n{label:<34}{head}{'ratio':>8}  target: < 200 ms, ratio < 2")
    for name in answers_names():
        cells = [by_size[n][name] * 1000 for n in sizes]
        ratio = cells[-1] / cells[0] if cells[0] else float("nan")
        verdict = "" if cells[-1] < 200 and (len(cells) == 1 or ratio < 2) else "  MISSED"
        row = "".join(f"{c:>14.1f}" for c in cells)
        print(f"{name:<34}{row}{ratio:>8.2f}{verdict}")


def answers_names() -> list[str]:
    return list(answers(None).keys())  # type: ignore[arg-type]


# -- write rate ---------------------------------------------------------------------


def write_workload(seed: int, num_events: int) -> list[tuple[str, Any]]:
    """``num_events`` events of calls over an hour, with their call rows, in the order
    a server writes them: by time, concurrent calls interleaved ("call" at start and
    end, "event" in between). Generated up front."""
    from dataclasses import replace

    timed: list[tuple[float, int, str, Any]] = []
    written = 0
    for plan in plan_calls(seed, num_events, start_s=NOW - 3600, end_s=NOW):
        call, events = events_for(plan)
        opened = replace(call, ended_at=None, outcome=None, error=None)
        timed.append((call.started_at, len(timed), "call", opened))
        timed += [(e.at_wall, len(timed) + i, "event", e) for i, e in enumerate(events)]
        end = call.ended_at if call.ended_at is not None else events[-1].at_wall
        timed.append((end, len(timed), "call", call))
        written += len(events)
        if written >= num_events:
            break
    return [(what, item) for _, _, what, item in sorted(timed, key=lambda t: (t[0], t[1]))]


def write_through_store(store: Any, workload: list[tuple[str, Any]]) -> tuple[int, float, float]:
    """Write ``workload`` as calls do; (events, seconds, mean µs in ``append``)."""
    num_events, in_append = 0, 0.0
    started = time.perf_counter()
    for what, item in workload:
        if what == "call":
            store.save_call(item)
            continue
        before = time.perf_counter()
        store.append(item)
        in_append += time.perf_counter() - before
        num_events += 1
    store.flush()
    seconds = time.perf_counter() - started
    return num_events, seconds, in_append / max(num_events, 1) * 1e6


def open_store(target: str, rollups: bool) -> Any:
    if target.startswith("postgresql"):
        from voicerail.events.postgres import PostgresEventStore

        return PostgresEventStore(target, rollups=rollups)
    return SQLiteEventStore(target, rollups=rollups)


def writer_main(target: str, seed: int, num_events: int, rollups: bool, start_at: float) -> None:
    """One ``--workers`` process: generate, wait for the common start, write, report."""
    workload = write_workload(seed, num_events)
    store = open_store(target, rollups)
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    written, _, append_us = write_through_store(store, workload)
    cpu = time.process_time() - cpu
    store.close()
    finished = time.time()
    print(
        json.dumps({"events": written, "finished": finished, "append_us": append_us, "cpu_s": cpu})
    )


def _write_once(make_target: Callable[[], str], num_events: int, workers: int, rollups: bool):
    target = make_target()
    open_store(target, True).close()  # schema first, as the supervisor does
    start_at = time.time() + 4.0 + 0.4 * workers
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", target, str(index + 1),
             str(num_events // workers), str(int(rollups)), str(start_at)],
            stdout=subprocess.PIPE, text=True,
        )
        for index in range(workers)
    ]  # fmt: skip
    done = [json.loads(p.communicate(timeout=3600)[0].splitlines()[-1]) for p in procs]
    total = sum(r["events"] for r in done)
    return {
        "events_per_s": total / (max(r["finished"] for r in done) - start_at),
        "cpu_us_per_event": sum(r["cpu_s"] for r in done) / total * 1e6,
        "append_us": sum(r["append_us"] for r in done) / len(done),
    }


def write_rate(
    make_target: Callable[[], str], num_events: int, workers: int, rounds: int = 3
) -> dict[str, Any]:
    """Events/s with rollups off and on, ``workers`` processes writing one store; the
    modes alternate for ``rounds`` rounds and the best round of each is kept (the
    machine is shared, so single runs swing by a third)."""
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            runs[mode].append(_write_once(make_target, num_events, workers, mode == "on"))
    figures: dict[str, Any] = {
        mode: {
            "events_per_s": max(r["events_per_s"] for r in done),
            "cpu_us_per_event": min(r["cpu_us_per_event"] for r in done),
            "append_us": min(r["append_us"] for r in done),
            "rounds": done,
        }
        for mode, done in runs.items()
    }
    off, on = figures["off"], figures["on"]
    figures["cost"] = 1 - on["events_per_s"] / off["events_per_s"]
    figures["cpu_cost"] = on["cpu_us_per_event"] / off["cpu_us_per_event"] - 1
    print(
        f"  {workers} writer(s), best of {rounds}: {off['events_per_s']:,.0f} events/s without "
        f"rollups, {on['events_per_s']:,.0f} with ({figures['cost']:+.0%} of the rate; target "
        f"at most 20 %)\n    writer process CPU {off['cpu_us_per_event']:.1f} -> "
        f"{on['cpu_us_per_event']:.1f} µs/event ({figures['cpu_cost']:+.0%}); append() "
        f"{off['append_us']:.1f} -> {on['append_us']:.1f} µs (the call path only queues)"
    )
    return figures


# -- main -----------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        target, seed, n, rollups, start_at = sys.argv[2:7]
        writer_main(target, int(seed), int(n), rollups == "1", float(start_at))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    parser.add_argument("--cli", action="store_true", help="also time whole ops commands")
    parser.add_argument("--write-events", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1, help="writer processes at once")
    parser.add_argument("--skip-answers", action="store_true")
    parser.add_argument("--skip-write", action="store_true", help="no write-rate measurement")
    args = parser.parse_args()
    figures: dict[str, Any] = {"events": args.events}
    if args.only in (None, "sqlite"):
        figures["sqlite"] = run_sqlite(args)
    if args.only in (None, "postgresql"):
        figures["postgresql"] = run_postgres(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def run_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not args.skip_answers:
        by_size = {n: sqlite_answers(n, args.repeat, args.cli) for n in sizes_for(args.events)}
        print_side_by_side("SQLite", by_size)
        out["answers"] = by_size
    if args.skip_write:
        return out
    print("\nSQLite write rate (WAL, one file):")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))
        out["write"] = {
            w: write_rate(
                lambda: str(Path(tmp) / f"w{next(counter)}.sqlite3"), args.write_events, w
            )
            for w in sorted({1, args.workers})
        }
    return out


def run_postgres(args: argparse.Namespace) -> dict[str, Any] | None:
    from voicerail.testing.postgres import (
        PostgresUnavailable,
        temporary_database,
        temporary_postgres,
    )

    settings = {"shared_buffers": "256MB", "work_mem": "32MB", "max_wal_size": "4GB"}
    try:
        server = temporary_postgres(settings)
        url = server.__enter__()
    except PostgresUnavailable as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    out: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            if not args.skip_answers:
                by_size = {}
                for n in sizes_for(args.events):
                    with temporary_database(url) as db_url:
                        by_size[n] = postgres_answers(db_url, n, args.repeat, args.cli)
                print_side_by_side("PostgreSQL", by_size)
                out["answers"] = by_size
            if args.skip_write:
                return out
            print("\nPostgreSQL write rate:")

            def fresh() -> str:
                return stack.enter_context(temporary_database(url))

            out["write"] = {
                w: write_rate(fresh, args.write_events, w) for w in sorted({1, args.workers})
            }
        return out
    finally:
        server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
