"""Soak: many calls' CRM writes through the outbox and relays, with faults; counts duplicates.

Each simulated call records, through the transactional outbox (SQLite by
default, PostgreSQL with ``--postgres``):

* a booking on turn 3 (and, for ``--replay-rate`` of calls, the same tool call
  recorded again, as a failover, a barge-in after the tool call or a resumed
  worker would replay it);
* at call end a call summary and a disposition, and for 30% of calls a lead.

* for ``--change-rate`` of calls, the booking names its entity and carries its
  whole state (as ``crm/bookings.py`` books), and 0-20 s later, often before
  the booking was delivered, a reschedule; half of those are then cancelled
  0-10 s later. At the end each such booking's record at the CRM must hold the
  last state recorded (``incoherent_bookings``), and no cancelled booking may
  be live there (``cancelled_left_live``): both must be 0.

Two relays (``--relays``) deliver to an in-process CRM that upserts by
idempotency key (as HubSpot and Salesforce do by a unique property / external
id) and injects faults into ``--fault-rate`` of attempts, drawn evenly among:
a timeout after the CRM committed, a 429 with Retry-After, a 503, and the relay
killed mid-batch (after or before the CRM applied the write); a killed relay is
replaced by a new one with a new owner name, and its leases expire.

Time is simulated (a fake clock advanced 0.1 s per step; calls arrive at
``--rate`` per simulated second), so the latencies printed are simulated
seconds from the write's recording to its delivery, and backoffs cost no real
time. The last line is one JSON object. Usage::

    python bench/crm_soak.py [--calls 10000] [--fault-rate 0.2] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from voicerail.crm.model import CRMWrite, WriteAction, idempotency_key
from voicerail.crm.outbox import DELIVERED, Outbox, RetryPolicy, SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.testing.clock import FakeClock
from voicerail.testing.crm import InMemoryCRM, RelayKilled

STEP_S = 0.1


def call_writes(call_id: str, rng: random.Random) -> tuple[list[CRMWrite], list[CRMWrite]]:
    """The writes of one call: (on turn 3, at call end)."""
    args = {"name": f"caller {call_id}", "day": "2026-12-08", "time": f"{9 + rng.randrange(8)}:00"}
    book = CRMWrite(
        idempotency_key(call_id, 3, "book_appointment", args), call_id, WriteAction.BOOKING, args
    )
    end: list[CRMWrite] = []
    summary = {"summary": "booked an appointment", "turns": 6}
    end.append(
        CRMWrite(
            idempotency_key(call_id, 0, "call_summary", summary),
            call_id,
            WriteAction.CALL_SUMMARY,
            summary,
        )
    )
    disposition = {"disposition": "completed"}
    end.append(
        CRMWrite(
            idempotency_key(call_id, 0, "disposition", disposition),
            call_id,
            WriteAction.DISPOSITION,
            disposition,
        )
    )
    if rng.random() < 0.3:
        lead = {"source": "phone", "interest": "new patient"}
        end.append(
            CRMWrite(idempotency_key(call_id, 0, "lead", lead), call_id, WriteAction.LEAD, lead)
        )
    return [book], end


def booking_state(call_id: str, hour: int, status: str = "booked") -> dict[str, Any]:
    """A booking's whole state, as ``crm/bookings.py`` writes it."""
    return {
        "name": f"caller {call_id}",
        "day": "2026-12-08",
        "time": f"{hour:02d}:00",
        "booking_id": f"BK-{call_id}",
        "status": status,
    }


def changed_booking(
    call_id: str, rng: random.Random, now: float
) -> tuple[CRMWrite, list[tuple[float, CRMWrite]]]:
    """An entity booking, and its later reschedule (and maybe cancel) with their times."""
    entity = f"booking:BK-{call_id}"
    hour = 9 + rng.randrange(8)
    args = booking_state(call_id, hour)
    key = idempotency_key(call_id, 3, "book_appointment", args)
    book = CRMWrite(key, call_id, WriteAction.BOOKING, args, entity=entity)
    moved_at = now + rng.uniform(0.0, 20.0)
    moved = booking_state(call_id, 9 + (hour - 9 + 1) % 8)
    later = [
        (moved_at, CRMWrite(f"{entity}:reschedule", call_id, WriteAction.BOOKING, moved, entity))
    ]
    if rng.random() < 0.5:
        cancelled = {**moved, "status": "cancelled"}
        later.append(
            (
                moved_at + rng.uniform(0.0, 10.0),
                CRMWrite(f"{entity}:cancel", call_id, WriteAction.BOOKING, cancelled, entity),
            )
        )
    return book, later


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(outbox: Outbox, args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak on ``outbox``; returns the figures."""
    rng = random.Random(args.seed)
    clock = FakeClock(start_s=0.0)
    crm = InMemoryCRM(
        fault_rate=args.fault_rate,
        seed=args.seed,
        retry_after_s=2.0,
        upsert_by_key=not args.crm_without_upsert,
    )
    policy = RetryPolicy(base_s=0.5, cap_s=30.0, max_attempts=args.max_attempts)
    serial = 0

    def new_relay() -> Relay:
        nonlocal serial
        serial += 1
        return Relay(
            outbox,
            crm,
            f"relay-{serial}",
            clock=clock,
            policy=policy,
            batch_size=args.batch,
            lease_s=args.lease_s,
        )

    relays = [new_relay() for _ in range(args.relays)]
    attempted = queued = replayed = killed = 0
    calls_started = 0
    ends: list[tuple[float, str, list[CRMWrite]]] = []
    changes: list[tuple[float, CRMWrite]] = []
    last_state: dict[str, dict[str, Any]] = {}  # entity -> the last state recorded
    record_keys: dict[str, str] = {}  # idempotency key -> the CRM's record key
    per_step = args.rate * STEP_S
    budget = 0.0
    deadline_s = args.calls / args.rate + args.drain_s
    while clock.monotonic() < deadline_s:
        now = clock.wall()
        budget += per_step
        while budget >= 1 and calls_started < args.calls:
            budget -= 1
            call_id = f"call-{calls_started:06d}"
            calls_started += 1
            turn3, end = call_writes(call_id, rng)
            later: list[tuple[float, CRMWrite]] = []
            if rng.random() < args.change_rate:
                book, later = changed_booking(call_id, rng, now)
                turn3 = [book]
                changes += later
                last_state[book.record_key] = dict(later[-1][1].properties)
            for write in turn3 + end + [w for _, w in later]:
                record_keys[write.idempotency_key] = write.record_key
            record_times = 2 if rng.random() < args.replay_rate else 1
            replayed += record_times - 1
            for _ in range(record_times):
                attempted += len(turn3)
                queued += sum(outbox.record(call_id, '{"node": "booked"}', turn3, now))
            ends.append((now + rng.uniform(5.0, 60.0), call_id, end))
        still: list[tuple[float, str, list[CRMWrite]]] = []
        for at, call_id, end in ends:
            if at <= now:
                attempted += len(end)
                queued += sum(outbox.record(call_id, '{"node": "ended"}', end, now))
            else:
                still.append((at, call_id, end))
        ends = still
        due = [w for at, w in changes if at <= now]
        changes = [(at, w) for at, w in changes if at > now]
        for write in due:
            attempted += 1
            queued += sum(outbox.record(write.call_id, '{"node": "changed"}', [write], now))
        for i, relay in enumerate(relays):
            try:
                await relay.run_once()
            except RelayKilled:
                killed += 1
                relays[i] = new_relay()
        clock.advance(STEP_S)
        if calls_started >= args.calls and not ends and not changes:
            stats = outbox.stats(clock.wall())
            if stats.pending == 0:
                break
    rows = outbox.rows()
    latencies = [float(r[4]) - r[3] for r in rows if r[1] == DELIVERED and r[4] is not None]
    stats = outbox.stats(clock.wall())
    missing = [
        r[0] for r in rows if r[1] == DELIVERED and record_keys.get(r[0], r[0]) not in crm.records
    ]
    incoherent = [e for e, state in last_state.items() if crm.records.get(e) != state]
    left_live = [
        e
        for e, state in last_state.items()
        if state["status"] == "cancelled"
        and (crm.records.get(e) or {}).get("status") != "cancelled"
    ]
    return {
        "calls": calls_started,
        "attempted": attempted,
        "replays": replayed,
        "queued": queued,
        "delivered": stats.delivered,
        "duplicates": crm.duplicates,
        "dead_lettered": stats.dead_lettered,
        "pending_at_end": stats.pending,
        "delivered_but_absent_at_crm": len(missing),
        "changed_bookings": len(last_state),
        "superseded": stats.superseded,
        "incoherent_bookings": len(incoherent),
        "cancelled_left_live": len(left_live),
        "crm_attempts": crm.attempts,
        "faults": dict(sorted(crm.fault_counts.items())),
        "relays_killed": killed,
        "latency_p50_s": round(percentile(latencies, 0.50), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "simulated_s": round(clock.monotonic(), 1),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--replay-rate", type=float, default=0.15)
    parser.add_argument(
        "--change-rate", type=float, default=0.2, help="bookings rescheduled (and cancelled)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="calls per simulated second")
    parser.add_argument("--relays", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lease-s", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=10)
    parser.add_argument("--drain-s", type=float, default=900.0, help="simulated time to drain")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--crm-without-upsert",
        action="store_true",
        help="a CRM that creates on every delivery (the count's control)",
    )
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL outbox")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the soak with ``argv``; prints the figures and returns them."""
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.postgres:
            from voicerail.crm.outbox_pg import PostgresOutbox
            from voicerail.testing.postgres import temporary_postgres

            outbox: Outbox = PostgresOutbox(stack.enter_context(temporary_postgres()))
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            outbox = SQLiteOutbox(tmp / "outbox.sqlite3")
        stack.callback(outbox.close)
        started = time.perf_counter()
        result = asyncio.run(soak(outbox, args))
        result["backend"] = "postgresql" if args.postgres else "sqlite"
        result["wall_s"] = round(time.perf_counter() - started, 1)
    print(
        f"calls {result['calls']}, writes attempted {result['attempted']} "
        f"({result['replays']} replays), queued {result['queued']}"
    )
    print(
        f"delivered {result['delivered']}, duplicates {result['duplicates']}, "
        f"dead-lettered {result['dead_lettered']}, pending {result['pending_at_end']}"
    )
    print(
        f"bookings changed {result['changed_bookings']}: superseded writes "
        f"{result['superseded']}, incoherent at the crm {result['incoherent_bookings']}, "
        f"cancelled but live {result['cancelled_left_live']}"
    )
    print(
        f"crm attempts {result['crm_attempts']}, faults {result['faults']}, "
        f"relays killed {result['relays_killed']}"
    )
    print(
        f"delivery latency p50 {result['latency_p50_s']} s, p99 {result['latency_p99_s']} s "
        f"(simulated), wall {result['wall_s']} s"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    outcome = main()
    clean = outcome["duplicates"] == outcome["incoherent_bookings"] == 0
    sys.exit(0 if clean else 1)
