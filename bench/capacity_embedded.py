"""Capacity with the embedded models: how many clinic calls 2 cores carry at p95 ≤ 1.5 s.

The server is ``voicerail serve --agent examples/clinic.yaml`` with its defaults
(faster-whisper tiny.en, piper joe, Silero VAD, the phrase cache, admission),
started once per step with ``--max-calls`` equal to the step, as a server sized
for that many calls would run (nothing is refused; optional work such as
speculative STT gives way past half of it): the step measures what the models
carry. The callers are the
clinic's happy-path suite (flite voices from Debian, over μ-law), placed by
the simulator on the same machine, either all at once (``--arrival together``)
or spread over ``--ramp`` seconds (``staggered``).

Per step it prints voice-to-voice latency at the caller's ear (end of the
caller's speech to the first audible agent audio) p50 / p95, calls failed and
refused, the expectation checks that failed, the server's CPU (% of one core)
and memory per call. The capacity is the largest step with p95 ≤ 1.5 s and no
failed call.

``--overload N`` then runs N × the default ``--max-calls`` callers arriving
together against a server with its default admission: every call must be
served or refused, none failed.

Usage::

    .venv/bin/python bench/capacity_embedded.py [--steps 2,4,6,8,10,12] [--calls-per-step N]
        [--arrival together|staggered] [--ramp 10] [--overload 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from voicerail.config import default_max_calls
from voicerail.sim.audio import AudioLibrary
from voicerail.sim.cli import run_event_loop
from voicerail.sim.report import build_report
from voicerail.sim.runner import RunOptions, Target, probe_target, run_calls
from voicerail.sim.scenario import expand, load_suite
from voicerail.sim.stats import percentile
from voicerail.testing.server import serve_process

ROOT = Path(__file__).parents[1]
SUITE = ROOT / "examples" / "scenarios" / "clinic_happy.yaml"
AGENT = ROOT / "examples" / "clinic.yaml"
P95_LIMIT_MS = 1500.0


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """One step's figures from a run report."""
    s = report["summary"]
    latencies = [ms for call in report["calls"] for ms in call["latencies_ms"]]
    return {
        "calls": s["calls"],
        "passed": s["passed"],
        "failed_checks_calls": s["failed"],
        "failed_outcome": s["outcomes"].get("failed", 0),
        "refused": s["refused"],
        "not_placed": s["failed_at_caller"],
        "failures_by_check": s["failures_by_check"],
        "v2v_p50_ms": percentile(latencies, 50) if latencies else None,
        "v2v_p95_ms": percentile(latencies, 95) if latencies else None,
        "turns": len(latencies),
        "cpu_percent_per_call": s["server_cpu_percent_per_call"],
        "rss_mb_per_call": s["server_rss_mb_per_call"],
        "outcomes": s["outcomes"],
    }


async def run_step(
    concurrency: int, calls: int, args: argparse.Namespace, max_calls: int | None
) -> dict[str, Any]:
    """One step against a fresh server; ``max_calls`` None keeps the server's default."""
    library = AudioLibrary(Path(args.cache_dir))
    plans = expand(load_suite(SUITE), calls=calls, seed=concurrency)
    turns = await asyncio.to_thread(library.prepare, plans)
    data_dir = Path(tempfile.mkdtemp(prefix=f"capacity-embedded-{concurrency}-"))
    serve_args = ["--agent", str(AGENT)]
    if max_calls is not None:
        serve_args += ["--max-calls", str(max_calls)]
    with serve_process(serve_args, data_dir=data_dir) as base_url:
        target = await probe_target(Target(base_url=base_url, data_dir=data_dir))
        ramp_s = 0.0 if args.arrival == "together" else args.ramp
        run = await run_calls(
            target, plans, turns, RunOptions(concurrency=concurrency, ramp_s=ramp_s)
        )
    row = figures(build_report(run, suite=f"capacity-embedded-{concurrency}"))
    row["concurrency"] = concurrency
    p95 = row["v2v_p95_ms"]
    row["ok"] = p95 is not None and p95 <= P95_LIMIT_MS and row["failed_outcome"] == 0
    return row


def _fmt(value: Any, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'calls':>5} {'v2v p50':>8} {'p95':>6} {'failed':>6} {'refused':>7} "
        f"{'checks✗':>7} {'cpu%/call':>9} {'MB/call':>8} ok"
    )
    for r in rows:
        print(
            f"{r['concurrency']:>5} {_fmt(r['v2v_p50_ms']):>8} {_fmt(r['v2v_p95_ms']):>6} "
            f"{r['failed_outcome']:>6} {r['refused']:>7} {r['failed_checks_calls']:>7} "
            f"{_fmt(r['cpu_percent_per_call'], 1):>9} {_fmt(r['rss_mb_per_call'], 1):>8} "
            f"{'yes' if r['ok'] else 'no'}  {json.dumps(r['failures_by_check'])}"
        )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for concurrency in [int(s) for s in args.steps.split(",") if s]:
        started = time.monotonic()
        calls = args.calls_per_step or concurrency
        row = await run_step(concurrency, calls, args, max_calls=concurrency)
        rows.append(row)
        print(f"step {concurrency}: {time.monotonic() - started:.0f} s", flush=True)
        print_table([row])
    overload = None
    if args.overload:
        ceiling = default_max_calls()
        calls = args.overload * ceiling
        started = time.monotonic()
        overload = await run_step(calls, calls, args, max_calls=None)
        print(f"overload {calls} callers: {time.monotonic() - started:.0f} s", flush=True)
    return {"steps": rows, "overload": overload}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="2,4,6,8,10,12")
    parser.add_argument("--calls-per-step", type=int, default=0, help="default: = concurrency")
    parser.add_argument("--arrival", choices=["together", "staggered"], default="together")
    parser.add_argument("--ramp", type=float, default=10.0, help="staggered: seconds of ramp")
    parser.add_argument(
        "--overload", type=int, default=0, help="then N x the default --max-calls callers at once"
    )
    parser.add_argument("--cache-dir", default="var/sim-cache")
    parser.add_argument("--out", default="var/bench/capacity_embedded.json")
    args = parser.parse_args()
    result = run_event_loop(main_async(args))
    cores = len(os.sched_getaffinity(0))
    print()
    print(f"capacity, embedded models, clinic agent, arrival {args.arrival}, {cores} cores:")
    print_table(result["steps"])
    passing = [r["concurrency"] for r in result["steps"] if r["ok"]]
    best = max(passing, default=0)
    print(
        f"largest step with v2v p95 ≤ {P95_LIMIT_MS:.0f} ms at the ear and no failed call: "
        f"{best} calls ({best / cores:.1f} per core)"
    )
    if result["overload"] is not None:
        o = result["overload"]
        print(
            f"overload: {o['calls']} callers at once against the default admission "
            f"(--max-calls {default_max_calls()}): served {o['calls'] - o['refused']}, "
            f"refused {o['refused']}, failed {o['failed_outcome']}, not placed {o['not_placed']}; "
            f"served calls' v2v p50 / p95 {_fmt(o['v2v_p50_ms'])} / {_fmt(o['v2v_p95_ms'])} ms"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"arrival": args.arrival, "cores": cores, **result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
