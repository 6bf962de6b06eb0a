"""``voicerail simulate``: scripted callers against a server, checked and reported.

Wiring (in ``voicerail.cli``)::

    from voicerail.sim import cli as sim_cli
    sim_cli.add_parser(sub)                      # in _parser()
    if args.command == "simulate":               # in main()
        return sim_cli.run(args)

Exit status: 0 when every call passed and nothing leaked between calls, 1 when
a check failed, 2 for a bad scenario file or option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from voicerail.errors import ConfigError

DEFAULT_CACHE_DIR = Path("var/sim-cache")
T = TypeVar("T")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to ``subparsers`` (from ``add_subparsers``)."""
    sim = subparsers.add_parser(
        "simulate",
        help="run scripted concurrent callers against a server and check the calls",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    sim.add_argument("scenarios", type=Path, nargs="?", help="scenario YAML file")
    where = sim.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running server: http://HOST:PORT (or its ws media URL)")
    where.add_argument("--serve", metavar="AGENT", help="start a server for this agent YAML")
    sim.add_argument(
        "--providers",
        choices=["embedded", "fake"],
        default="embedded",
        help="with --serve: the embedded speech models, or cloud-like fakes (for load)",
    )
    sim.add_argument(
        "--providers-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --serve: a deployment file naming the chains (fakes: fake-stt, fake-tts, "
        "fake-llm, renamed with 'name' to fail over between two)",
    )
    sim.add_argument(
        "--transport",
        choices=["twilio", "telnyx", "plivo", "vonage"],
        default="twilio",
        help="the provider every call comes through: its webhook, then its stream",
    )
    sim.add_argument("--calls", type=int, default=None, metavar="M", help="callers in all")
    sim.add_argument("--concurrency", type=int, default=None, metavar="N")
    sim.add_argument("--ramp", type=float, default=None, metavar="SECONDS")
    sim.add_argument("--faults", type=Path, default=None, metavar="FILE", help="fault profiles")
    sim.add_argument(
        "--max-calls",
        type=int,
        default=None,
        metavar="N",
        help="with --serve: the server's admission ceiling (default: its own)",
    )
    sim.add_argument(
        "--impair", default="", metavar="SPEC", help="delay=MS,jitter=MS,loss=PCT on the media path"
    )
    sim.add_argument(
        "--impair-with",
        choices=["process", "netem"],
        default="process",
        help="in-process impairment, or tc netem in a network namespace (root, with --serve)",
    )
    sim.add_argument("--report", type=Path, default=None, metavar="DIR")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--vad", choices=["silero", "energy"], default="silero", help="fake server")
    sim.add_argument("--data-dir", type=Path, default=None, help="the started server's data")
    sim.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    sim.add_argument("--no-progress", action="store_true")
    sim.add_argument("--json", action="store_true", help="print report.json to stdout")
    sim.add_argument("--schema", action="store_true", help="print the scenario JSON Schema")
    return sim


def run(args: argparse.Namespace) -> int:
    """Run ``voicerail simulate`` for parsed ``args``; returns the exit status."""
    from rich.console import Console

    console = Console(stderr=args.json)
    if args.schema:
        from voicerail.sim.scenario import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    try:
        from voicerail.extras import require_extra

        require_extra("sim", "voicerail simulate")
        if args.scenarios is None:
            raise ConfigError("a scenario file is required", source="voicerail simulate")
        if args.impair and args.impair_with == "netem":
            return _rerun_under_netem(args, console)
        return run_event_loop(_simulate(args, console))
    except ConfigError as exc:
        from rich.markup import escape

        # escaped: "[sim]" in "pip install 'voicerail[sim]'" is not markup
        console.print(f"[red]voicerail simulate:[/red] {escape(str(exc))}")
        return 2


async def _simulate(args: argparse.Namespace, console: Any) -> int:
    from voicerail.sim.audio import AudioLibrary
    from voicerail.sim.impair import parse_impairment
    from voicerail.sim.runner import RunOptions
    from voicerail.sim.scenario import expand, load_suite

    suite = load_suite(args.scenarios)
    impairment = parse_impairment(args.impair)
    plans = expand(suite, calls=args.calls, seed=args.seed, base_dir=args.scenarios.parent)
    options = RunOptions(
        concurrency=max(1, args.concurrency or suite.concurrency or min(len(plans), 10)),
        ramp_s=args.ramp if args.ramp is not None else (suite.ramp_s or 0.0),
        impairment=impairment,
        transport=args.transport,
    )
    console.print(f"preparing audio for {len(plans)} callers…")
    turns = await asyncio.to_thread(AudioLibrary(args.cache_dir).prepare, plans)
    with _target(args, console) as target:
        run_result = await _run_with_progress(target, plans, turns, options, args, console)
    return _finish(run_result, suite.name, args, console)


@contextlib.contextmanager
def _target(args: argparse.Namespace, console: Any) -> Iterator[Any]:
    from voicerail.sim.runner import Target

    if args.url:
        yield Target(base_url=http_base(args.url), label=args.url)
        return
    if not args.serve:
        raise ConfigError("give --url URL or --serve AGENT", source="voicerail simulate")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="voicerail-sim-"))
    if args.providers == "fake":
        from voicerail.sim.fake_server import FakeServerConfig, fake_server_process

        config = FakeServerConfig(
            agent=args.serve,
            data_dir=data_dir,
            faults=args.faults,
            providers=args.providers_file,
            vad=args.vad,
        )
        console.print(f"starting a server for {args.serve} with cloud-like fake providers…")
        with fake_server_process(config) as (base_url, pid):
            yield Target(
                base_url=base_url, pid=pid, data_dir=data_dir, label=f"{args.serve} (fake)"
            )
        return
    from voicerail.testing.server import serve_process

    serve_args = ["--agent", args.serve]
    if args.max_calls is not None:
        serve_args += ["--max-calls", str(args.max_calls)]
    if args.faults is not None:
        serve_args += ["--faults", str(args.faults)]
    if args.providers_file is not None:
        serve_args += ["--providers", str(args.providers_file)]
    console.print(f"starting voicerail serve for {args.serve} (loading models)…")
    with serve_process(serve_args, data_dir=data_dir) as base_url:
        yield Target(base_url=base_url, data_dir=data_dir, label=args.serve)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (it is, with ``uvicorn[standard]``),
    else on asyncio's default loop; one simulator process then drives more callers."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def http_base(url: str) -> str:
    """``ws://h:p/twilio/media`` or ``http://h:p/`` → ``http://h:p``."""
    scheme, _, rest = url.partition("://")
    if not rest:
        scheme, rest = "http", url
    secure = scheme in ("https", "wss")
    return f"{'https' if secure else 'http'}://{rest.split('/', 1)[0]}"


async def _run_with_progress(
    target: Any, plans: Any, turns: Any, options: Any, args: argparse.Namespace, console: Any
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from voicerail.sim.runner import probe_target, run_calls

    target = await probe_target(target)
    if args.no_progress:
        return await run_calls(target, plans, turns, options)
    columns = (
        TextColumn("[bold]calls"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("", total=len(plans))

        def update(p: Any) -> None:
            bar.update(
                task,
                completed=p.done,
                description=f"{p.active} in progress, {p.failed_at_caller} not placed",
            )

        return await run_calls(target, plans, turns, options, on_progress=update)


def _finish(run_result: Any, suite_name: str, args: argparse.Namespace, console: Any) -> int:
    from voicerail.sim.report import (
        build_report,
        failures_table,
        simulator_warning,
        summary_table,
        write_report,
    )

    report = build_report(run_result, suite=suite_name)
    console.print(summary_table(report))
    if not report["passed"]:
        console.print(failures_table(report))
    warning = simulator_warning(report)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if args.report is not None:
        json_path, html_path = write_report(report, args.report)
        console.print(f"report: {json_path} and {html_path}")
    if args.json:
        print(json.dumps(report, default=str))
    return 0 if report["passed"] else 1


def _rerun_under_netem(args: argparse.Namespace, console: Any) -> int:
    """Run this same command inside a network namespace whose loopback has netem."""
    from voicerail.sim.impair import netem_available, netem_command, parse_impairment

    impairment = parse_impairment(args.impair)
    if not args.serve:
        raise ConfigError(
            "--impair-with netem needs --serve: the server must run inside the namespace",
            source="voicerail simulate",
        )
    if not netem_available():
        console.print(
            "[yellow]warning:[/yellow] tc netem is not available here (needs root and the "
            "sch_netem kernel module); impairing in process instead"
        )
        args.impair_with = "process"
        return run_event_loop(_simulate(args, console))
    original = list(sys.argv[1:])
    if original[:1] == ["simulate"]:
        original = original[1:]
    argv = _without_option(_without_option(original, "--impair"), "--impair-with")
    command = netem_command(impairment, [sys.executable, "-m", "voicerail.sim.cli", *argv])
    console.print(f"running under tc netem: {command[-1][:120]}…")
    return subprocess.run(command, env=os.environ.copy()).returncode


def _without_option(argv: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m voicerail.sim.cli SCENARIOS.yaml …``: the same as ``voicerail simulate``."""
    parser = argparse.ArgumentParser(prog="voicerail")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["simulate"]:
        argv = ["simulate", *argv]
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
