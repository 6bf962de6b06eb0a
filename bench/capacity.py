"""Capacity: how many concurrent calls a server carries on this machine, with 1 or more workers.

The server is the real voicerail server (call driver, real VAD, G.711 and
resampling) with cloud-like fake providers (``voicerail.sim.fake_server``:
lognormal STT / LLM / TTS latencies, no local models) and the model-free echo
agent. The simulator (same machine, one asyncio process) places calls at
increasing concurrency; at each step it reports:

* the runtime's own share of turn latency (p50 / p99): time from the end of the
  caller's turn to the first agent audio, minus the providers' time;
* how late the server saw each turn's end, p99 (``inbound_lag_ms``: backlog
  that the runtime share, which starts at detection, cannot see);
* inbound frame jitter at the server and outbound frame jitter at the caller
  (|inter-arrival - 20 ms| of paced frames), audio gaps at the caller's ear;
* the server's CPU (% of one core) and memory per call;
* the simulator's own lateness (if its frames go out late, the step is flagged).

It prints the highest step where the runtime's share stays under 20 ms at p99,
turn ends are seen within 72 ms p99 (no backlog), with no audio gap and no
failed call, as calls per core.

``--workers 1,2`` runs every step once per worker count (the fake server run as
``voicerail serve --workers N`` runs: one supervisor, N processes on one port,
``server/workers.py``) and prints the counts side by side. CPU and memory are the
supervisor's and its workers' together; the server loop lag and inbound jitter
columns are one worker's (whichever answered ``/sim/stats``).

Usage::

    .venv/bin/python bench/capacity.py [--steps 10,25,50,100,150,200] [--vad energy]
        [--vad-batch-ms 0] [--workers 1,2]
        [--calls-per-step N] [--frames-per-media 5] [--out var/bench/capacity.json]
        [--report-dir DIR] [--transport {twilio,telnyx,plivo,vonage}]
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

from voicerail.sim.audio import AudioLibrary
from voicerail.sim.cli import run_event_loop
from voicerail.sim.fake_server import FakeServerConfig, fake_server_process
from voicerail.sim.fakes import CloudLatency
from voicerail.sim.report import build_report, write_report
from voicerail.sim.runner import RunOptions, Target, probe_target, run_calls
from voicerail.sim.scenario import expand, load_suite

SUITE = Path(__file__).parents[1] / "examples" / "scenarios" / "echo_load.yaml"
SHARE_P99_LIMIT_MS = 20.0
INBOUND_LAG_P99_LIMIT_MS = 72.0
"""How late a turn's end may be seen, p99: up to one 32 ms VAD window and one 20 ms
frame of rounding, plus the same 20 ms the runtime's share is allowed."""


def step_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one step, from a run report."""
    s = report["summary"]
    server_stats = report["server"].get("stats") or {}
    sim = report["simulator"]
    return {
        "calls": s["calls"],
        "failed": s["failed"],
        "failures": s["failures_by_check"],
        "runtime_share_p50_ms": s["runtime_share_ms"]["p50"],
        "runtime_share_p99_ms": s["runtime_share_ms"]["p99"],
        "inbound_lag_p50_ms": (s.get("inbound_lag_ms") or {}).get("p50"),
        "inbound_lag_p99_ms": (s.get("inbound_lag_ms") or {}).get("p99"),
        "latency_p50_ms": s["latency_ms"]["p50"],
        "latency_p99_ms": s["latency_ms"]["p99"],
        "inbound_jitter_p99_ms": (s["inbound_jitter_ms"] or {}).get("p99"),
        "outbound_jitter_p99_ms": s["outbound_jitter_ms"]["p99"],
        "audio_gaps": s["audio_gaps"]["count"],
        "arrival_gaps_over_40ms": s["arrival_gaps_over_40ms"]["count"],
        "server_cpu_percent_per_call": s["server_cpu_percent_per_call"],
        "server_cpu_percent_mean": (report["server"].get("resources") or {}).get(
            "cpu_percent_mean"
        ),
        "server_rss_mb_per_call": s["server_rss_mb_per_call"],
        "server_loop_lag_p99_ms": (server_stats.get("loop_lag_ms") or {}).get("p99"),
        "simulator_send_lag_p99_ms": sim["send_lag_ms"].get("p99"),
        "simulator_cpu_seconds": sim.get("cpu_seconds"),
        "duration_s": report["duration_s"],
        "contamination": s["contamination"]["findings"],
    }


def step_ok(figures: dict[str, Any]) -> bool:
    """The capacity criterion: runtime share p99 under 20 ms, turn ends seen in time
    (inbound lag p99 under :data:`INBOUND_LAG_P99_LIMIT_MS`), no gap, no failure."""
    share = figures["runtime_share_p99_ms"]
    lag = figures["inbound_lag_p99_ms"]
    return (
        share is not None
        and share < SHARE_P99_LIMIT_MS
        and lag is not None
        and lag < INBOUND_LAG_P99_LIMIT_MS
        and figures["audio_gaps"] == 0
        and figures["failed"] == 0
    )


async def run_step(
    concurrency: int,
    calls: int,
    args: argparse.Namespace,
    library: AudioLibrary,
    workers: int = 1,
) -> dict[str, Any]:
    """One concurrency step against a fresh server with ``workers`` processes."""
    load_before = os.getloadavg()[0]
    plans = expand(load_suite(SUITE), calls=calls, seed=concurrency)
    turns = await asyncio.to_thread(library.prepare, plans)
    data_dir = Path(tempfile.mkdtemp(prefix=f"capacity-{concurrency}-"))
    config = FakeServerConfig(
        agent="echo",
        data_dir=data_dir,
        vad=args.vad,
        vad_batch_ms=args.vad_batch_ms,
        latency=CloudLatency(),
        frames_per_media=args.frames_per_media,
        workers=workers,
    )
    with fake_server_process(config) as (base_url, pid):
        target = await probe_target(Target(base_url=base_url, pid=pid, data_dir=data_dir))
        ramp_s = max(2.0, concurrency * args.ramp_per_call)
        options = RunOptions(concurrency=concurrency, ramp_s=ramp_s, transport=args.transport)
        run = await run_calls(target, plans, turns, options)
    report = build_report(run, suite=f"capacity-{concurrency}")
    if args.report_dir:
        write_report(report, Path(args.report_dir) / f"w{workers}-step-{concurrency}")
    figures = step_figures(report)
    figures["concurrency"] = concurrency
    figures["workers"] = workers
    # Other work on the machine shows here (and as the simulator's own lateness).
    figures["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    figures["ok"] = step_ok(figures)
    return figures


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The per-step table."""
    head = (
        f"{'wrk':>3} {'conc':>5} {'share p50':>9} {'p99':>6} {'v2v p50':>8} {'in lag':>7} "
        f"{'in jit':>7} {'out jit':>7} {'gaps':>5} {'fail':>5} {'cpu%/call':>9} {'MB/call':>8} "
        f"{'srv lag':>8} {'sim lag':>8} ok"
    )
    print(head)
    for r in rows:
        print(
            f"{r['workers']:>3} {r['concurrency']:>5} {_fmt(r['runtime_share_p50_ms'], 2):>9} "
            f"{_fmt(r['runtime_share_p99_ms']):>6} {_fmt(r['latency_p50_ms'], 0):>8} "
            f"{_fmt(r['inbound_lag_p99_ms']):>7} "
            f"{_fmt(r['inbound_jitter_p99_ms']):>7} {_fmt(r['outbound_jitter_p99_ms']):>7} "
            f"{r['audio_gaps']:>5} {r['failed']:>5} {_fmt(r['server_cpu_percent_per_call'], 2):>9} "
            f"{_fmt(r['server_rss_mb_per_call'], 2):>8} {_fmt(r['server_loop_lag_p99_ms']):>8} "
            f"{_fmt(r['simulator_send_lag_p99_ms']):>8} {'yes' if r['ok'] else 'no'}"
        )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    library = AudioLibrary(Path(args.cache_dir))
    rows = []
    for workers in worker_counts(args.workers):
        for concurrency in [int(s) for s in args.steps.split(",")]:
            calls = args.calls_per_step or concurrency
            started = time.monotonic()
            row = await run_step(concurrency, calls, args, library, workers)
            rows.append(row)
            print(
                f"{workers} workers, step {concurrency}: {time.monotonic() - started:.0f} s, "
                f"load average {row['load_avg_1m'][0]} before, {row['load_avg_1m'][1]} after",
                flush=True,
            )
            print_table([row])
            if args.stop_after_fail and not row["ok"]:
                break
    return rows


def worker_counts(text: str) -> list[int]:
    """``"1,2"`` → ``[1, 2]``.

    Raises:
        argparse.ArgumentTypeError: a count that is not a positive integer.
    """
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected worker counts like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected worker counts like 1,2, got {text!r}")
    return counts


def side_by_side(rows: list[dict[str, Any]], cores: int) -> list[str]:
    """One line per worker count: the highest passing step, as calls per core, and
    each step's verdict with its inbound lag p99 (the criterion that fails first)."""
    lines = []
    for workers in sorted({r["workers"] for r in rows}):
        mine = [r for r in rows if r["workers"] == workers]
        best = max((r["concurrency"] for r in mine if r["ok"]), default=0)
        steps = "  ".join(
            f"{r['concurrency']}:{'ok' if r['ok'] else 'FAIL'}"
            f"({_fmt(r['inbound_lag_p99_ms'], 0)} ms)"
            for r in mine
        )
        lines.append(
            f"{workers} worker{'s' if workers > 1 else ' '}: {best:>4} calls = "
            f"{best / cores:>5.1f} calls per core | {steps}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,25,50,100,150,200")
    parser.add_argument("--calls-per-step", type=int, default=0, help="default: = concurrency")
    parser.add_argument("--vad", choices=["silero", "energy"], default="silero")
    parser.add_argument(
        "--transport",
        choices=["twilio", "telnyx", "plivo", "vonage"],
        default="twilio",
        help="the provider every call comes through (webhook, then stream)",
    )
    parser.add_argument(
        "--vad-batch-ms", type=float, default=4.0, help="Silero batching across calls (0: off)"
    )
    parser.add_argument("--ramp-per-call", type=float, default=0.1, help="seconds of ramp per call")
    parser.add_argument("--stop-after-fail", action="store_true")
    parser.add_argument(
        "--workers", default="1", help="server processes, one run per count: e.g. 1,2"
    )
    parser.add_argument(
        "--frames-per-media", type=int, default=1, help="20 ms frames per outbound media message"
    )
    parser.add_argument("--cache-dir", default="var/sim-cache")
    parser.add_argument("--out", default="var/bench/capacity.json")
    parser.add_argument(
        "--report-dir", default="", help="also write each step's report.json and report.html here"
    )
    args = parser.parse_args()
    worker_counts(args.workers)  # refuse a bad list before any step runs
    rows = run_event_loop(main_async(args))
    print()
    print(f"capacity, {args.vad} VAD, echo agent with cloud-like fake providers:")
    print_table(rows)
    cores = os.cpu_count() or 1
    print(
        f"highest concurrency with runtime share p99 < {SHARE_P99_LIMIT_MS:.0f} ms, "
        f"inbound lag p99 < {INBOUND_LAG_P99_LIMIT_MS:.0f} ms, no gaps, no failures "
        f"({cores} cores; step:verdict(inbound lag p99)):"
    )
    for line in side_by_side(rows, cores):
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = {"vad": args.vad, "cores": cores, "workers": args.workers, "steps": rows}
    out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
