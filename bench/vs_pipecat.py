"""Side by side with Pipecat: same callers, same fake-provider latencies, same machine.

Two servers, each in its own process and measured one after the other by the
same simulator in the same run:

* voicerail: the real server with cloud-like fake providers and the echo agent
  (``voicerail.sim.fake_server``), Silero VAD, 0.5 s endpointing;
* Pipecat: ``bench/pipecat_bot.py`` — Pipecat's ``TwilioFrameSerializer`` and
  FastAPI WebSocket transport, Silero VAD with 0.5 s stop, fake STT / "LLM" /
  TTS services with the same lognormal latencies and the same echo behaviour.
  It runs under ``var/pipecat-venv`` (set it up with
  ``python3 -m venv var/pipecat-venv && var/pipecat-venv/bin/pip install
  'pipecat-ai[websocket,silero]' uvicorn``; Pipecat pins ``soxr~=1.0`` and
  ``protobuf<7``, so it stays out of voicerail's environment).

At each concurrency step both are compared on turn latency at the caller's
ear (p50 / p99) and on whether they sustain the load: every call answered, no
audio gap at the ear, turn latency p99 under 1.5 s (the seed's abandonment
threshold). The ratios are printed at the end.

Usage::

    .venv/bin/python bench/vs_pipecat.py [--steps 5,10,20,40] [--pipecat-python PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voicerail.sim.audio import AudioLibrary
from voicerail.sim.cli import run_event_loop
from voicerail.sim.fake_server import (
    FakeServerConfig,
    fake_server_process,
    stop_process,
    wait_healthy,
)
from voicerail.sim.fakes import CloudLatency
from voicerail.sim.report import build_report
from voicerail.sim.runner import RunOptions, Target, probe_target, run_calls
from voicerail.sim.scenario import expand, parse_suite
from voicerail.testing.server import free_port

BOT = Path(__file__).with_name("pipecat_bot.py")
LATENCY_P99_LIMIT_MS = 1500.0
SUITE = {
    "name": "vs-pipecat",
    "variables": {
        "first": ["Maria", "James", "Priya", "Daniel", "Sofia", "Ahmed", "Emma", "Lucas"],
        "last": ["Lopez", "Carter", "Patel", "Nguyen", "Rossi", "Khan", "Brown", "Garcia"],
    },
    "scenarios": [
        {
            "name": "echo-conversation",
            "token": "{first} {last}",
            "turns": [
                {"say": "Hello, my name is {first} {last}."},
                {"say": "I would like to book an appointment for next week."},
                {"say": "Tuesday afternoon would be best for me."},
                {"say": "Thank you, goodbye."},
            ],
        }
    ],
}


@contextlib.contextmanager
def pipecat_process(python: str, latency: CloudLatency, log_dir: Path) -> Iterator[tuple[str, int]]:
    """Run the Pipecat bot; yield (base URL, pid)."""
    port = free_port()
    log_path = log_dir / "pipecat.log"
    command = [
        python, str(BOT), "--port", str(port),
        "--stt-latency", str(latency.stt_s), "--llm-latency", str(latency.llm_s),
        "--tts-latency", str(latency.tts_s), "--sigma", str(latency.sigma),
        "--seconds-per-word", str(latency.seconds_per_word),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(proc, base_url, 120.0, log_path)
            yield base_url, proc.pid
        finally:
            stop_process(proc)


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """One system's figures at one step."""
    s = report["summary"]
    failures = s["failures_by_check"]
    unanswered = failures.get("reply", 0) + failures.get("call", 0)
    return {
        "calls": s["calls"],
        "latency_p50_ms": s["latency_ms"]["p50"],
        "latency_p99_ms": s["latency_ms"]["p99"],
        "turns": s["latency_ms"]["count"],
        "unanswered_calls": unanswered,
        "audio_gaps": s["audio_gaps"]["count"],
        "protocol_errors": failures.get("protocol", 0),
        "outbound_jitter_p99_ms": s["outbound_jitter_ms"]["p99"],
        "server_cpu_percent_per_call": s["server_cpu_percent_per_call"],
        "server_rss_mb_per_call": s["server_rss_mb_per_call"],
        "simulator_send_lag_p99_ms": report["simulator"]["send_lag_ms"].get("p99"),
    }


def sustains(row: dict[str, Any]) -> bool:
    """Every call answered, no audio gap, p99 latency under the abandonment threshold."""
    p99 = row["latency_p99_ms"]
    return (
        row["unanswered_calls"] == 0
        and row["audio_gaps"] == 0
        and p99 is not None
        and p99 < LATENCY_P99_LIMIT_MS
    )


async def measure(
    target: Target, concurrency: int, library: AudioLibrary, ramp_per_call: float
) -> dict[str, Any]:
    plans = expand(parse_suite(SUITE), calls=concurrency, seed=concurrency)
    turns = await asyncio.to_thread(library.prepare, plans)
    target = await probe_target(target)
    options = RunOptions(concurrency=concurrency, ramp_s=max(2.0, concurrency * ramp_per_call))
    run = await run_calls(target, plans, turns, options)
    row = figures(build_report(run, suite=f"{target.label}-{concurrency}"))
    row["sustained"] = sustains(row)
    return row


async def main_async(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    library = AudioLibrary(Path(args.cache_dir))
    latency = CloudLatency()
    rows: dict[str, list[dict[str, Any]]] = {"voicerail": [], "pipecat": []}
    work = Path(tempfile.mkdtemp(prefix="vs-pipecat-"))
    for concurrency in [int(s) for s in args.steps.split(",")]:
        config = FakeServerConfig(
            agent="echo", data_dir=work / f"voicerail-{concurrency}", vad="silero",
            latency=latency,
        )  # fmt: skip
        with fake_server_process(config) as (base_url, pid):
            target = Target(base_url=base_url, pid=pid, label="voicerail")
            row = await measure(target, concurrency, library, args.ramp_per_call)
        rows["voicerail"].append({"concurrency": concurrency, **row})
        with pipecat_process(args.pipecat_python, latency, work) as (base_url, pid):
            target = Target(base_url=base_url, pid=pid, has_api=False, label="pipecat")
            row = await measure(target, concurrency, library, args.ramp_per_call)
        rows["pipecat"].append({"concurrency": concurrency, **row})
        print_step(concurrency, rows)
    return rows


def _f(value: Any, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_step(concurrency: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("voicerail", "pipecat"):
        r = rows[name][-1]
        print(
            f"{concurrency:>4} {name:<9} v2v p50 {_f(r['latency_p50_ms']):>5} ms "
            f"p99 {_f(r['latency_p99_ms']):>5} ms  gaps {r['audio_gaps']:>4}  "
            f"unanswered {r['unanswered_calls']:>3}  protocol {r['protocol_errors']:>3}  "
            f"cpu/call {_f(r['server_cpu_percent_per_call'], 2):>5} %  "
            f"MB/call {_f(r['server_rss_mb_per_call'], 2):>5}  "
            f"sim lag p99 {_f(r['simulator_send_lag_p99_ms'], 1):>5} ms  "
            f"{'sustained' if r['sustained'] else 'NOT sustained'}",
            flush=True,
        )


def ratios(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pipecat / voicerail ratios per step, and the sustained concurrency of each."""
    best = {
        name: max((r["concurrency"] for r in rows[name] if r["sustained"]), default=0)
        for name in rows
    }
    per_step = []
    for v, p in zip(rows["voicerail"], rows["pipecat"], strict=True):
        step: dict[str, Any] = {"concurrency": v["concurrency"]}
        for key in ("latency_p50_ms", "latency_p99_ms", "server_cpu_percent_per_call"):
            step[f"{key}_pipecat_over_voicerail"] = (
                p[key] / v[key] if p[key] is not None and v[key] else None
            )
        per_step.append(step)
    return {
        "per_step": per_step,
        "sustained_concurrency": best,
        "sustained_voicerail_over_pipecat": (
            best["voicerail"] / best["pipecat"] if best["pipecat"] else None
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="5,10,20,40")
    parser.add_argument("--pipecat-python", default="var/pipecat-venv/bin/python")
    parser.add_argument("--ramp-per-call", type=float, default=0.1)
    parser.add_argument("--cache-dir", default="var/sim-cache")
    parser.add_argument("--out", default="var/bench/vs_pipecat.json")
    args = parser.parse_args()
    if not Path(args.pipecat_python).exists():
        print(f"no Pipecat environment at {args.pipecat_python}; see this script's docstring")
        return 2
    rows = run_event_loop(main_async(args))
    summary = ratios(rows)
    print()
    for step in summary["per_step"]:
        print(
            f"{step['concurrency']:>4} calls: Pipecat / voicerail latency p50 "
            f"{_f(step['latency_p50_ms_pipecat_over_voicerail'], 2)}, p99 "
            f"{_f(step['latency_p99_ms_pipecat_over_voicerail'], 2)}, CPU per call "
            f"{_f(step['server_cpu_percent_per_call_pipecat_over_voicerail'], 2)}"
        )
    best = summary["sustained_concurrency"]
    print(
        f"sustained concurrency: voicerail {best['voicerail']}, Pipecat {best['pipecat']} "
        f"(ratio {_f(summary['sustained_voicerail_over_pipecat'], 1)})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": rows, "ratios": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
