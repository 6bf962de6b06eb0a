"""Failover with the real models, measured at the caller's ear (``bench/failover.py --embedded``).

The clinic agent on its embedded chains (faster-whisper → pocketsphinx, piper →
espeak-ng) answers the clinic's booking callers twice in one run: once clean,
once with ``piper`` hanging on half its requests and ``faster-whisper`` answering
503 on 30 % (``routing/faults.py`` profiles, injected in the server). Printed:
voice-to-voice latency at the ear (end of the caller's speech to the first
audible agent audio) p50 / p95 for each run and the p95 the faults add, and the
share of faulted calls that still reached their goal (the booking written with
the caller's name, day and time).

Usage: ``.venv/bin/python bench/failover.py --embedded [--calls 6] [--concurrency 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from voicerail.sim.audio import AudioLibrary
from voicerail.sim.report import build_report
from voicerail.sim.runner import RunOptions, Target, probe_target, run_calls
from voicerail.sim.scenario import expand, load_suite
from voicerail.sim.stats import percentile
from voicerail.testing.server import serve_process

ROOT = Path(__file__).parents[1]
AGENT = ROOT / "examples" / "clinic.yaml"
SUITE = """
name: failover-embedded
voice: "flite:slt"
variables:
  first: [Maria, James, Priya, Daniel, Sofia, Lucas]
  last: [Lopez, Carter, Patel, Nguyen, Rossi, Brown]
  day: [Monday, Tuesday, Wednesday, Thursday, Friday]
  hour: ["9", "10", "11", "2", "3", "4"]
scenarios:
  - name: book
    token: "{first} {last}"
    turns:
      - say: I would like to book an appointment.
      - say: "Next {day} at {hour} PM."
      - say: "My name is {first} {last}."
      - say: Yes, please book it.
      - say: No, that's all. Thank you, goodbye.
    expect:
      booking: {name: "{first} {last}", day: "{day}", time: "{hour} PM"}
"""
FAULTS = """
piper:
  hang_rate: 0.5
faster-whisper:
  error_rates: {"503": 0.3}
"""


async def run(faulted: bool, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    suite_path = work / "suite.yaml"
    suite_path.write_text(SUITE, encoding="utf-8")
    plans = expand(load_suite(suite_path), calls=args.calls, seed=7)
    turns = await asyncio.to_thread(AudioLibrary(Path(args.cache_dir)).prepare, plans)
    data_dir = work / ("faulted" if faulted else "clean")
    serve_args = ["--agent", str(AGENT)]
    if faulted:
        faults = work / "faults.yaml"
        faults.write_text(FAULTS, encoding="utf-8")
        serve_args += ["--faults", str(faults)]
    with serve_process(serve_args, data_dir=data_dir) as base_url:
        target = await probe_target(Target(base_url=base_url, data_dir=data_dir))
        result = await run_calls(target, plans, turns, RunOptions(concurrency=args.concurrency))
    report = build_report(result, suite="failover-embedded")
    latencies = [ms for call in report["calls"] for ms in call["latencies_ms"]]
    booked = sum(
        1 for call in report["calls"] if not any(f["check"] == "booking" for f in call["failures"])
    )
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "booked": booked,
        "calls": len(report["calls"]),
        "failed_outcome": report["summary"]["outcomes"].get("failed", 0),
    }


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="failover-embedded-"))
    clean = await run(False, args, work)
    faulted = await run(True, args, work)
    print(f"{'run':<9}{'v2v p50':>9}{'p95':>7}{'booked':>9}{'failed':>8}   (ms at the ear)")
    for name, r in (("clean", clean), ("faulted", faulted)):
        print(
            f"{name:<9}{r['p50'] or 0:>9.0f}{r['p95'] or 0:>7.0f}"
            f"{r['booked']:>5}/{r['calls']:<3}{r['failed_outcome']:>8}"
        )
    added = (faulted["p95"] or 0) - (clean["p95"] or 0)
    print(
        f"p95 added by the faults: {added:.0f} ms; faulted calls that reached their goal: "
        f"{faulted['booked']} of {faulted['calls']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--cache-dir", default="var/sim-cache")
    asyncio.run(main_async(parser.parse_args(argv)))
