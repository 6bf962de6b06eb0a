"""``voicerail ops``: the four questions, in text or ``--json``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from voicerail.ops import reports

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``"15m"`` → 900.0; units s, m, h, d, w.

    Raises:
        argparse.ArgumentTypeError: not a number followed by a unit.
    """
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 15m or 2h, got {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def add_parser(sub: Any) -> None:
    """Add ``ops`` and its subcommands to the main parser's subparsers."""
    ops = sub.add_parser("ops", help="answer the four operational questions")
    ops_sub = ops.add_subparsers(dest="ops_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=None)
    common.add_argument("--json", action="store_true")
    failures = ops_sub.add_parser("failures", parents=[common], help="failure rate by provider")
    failures.add_argument("--window", type=parse_duration, default=900.0)
    cost = ops_sub.add_parser("cost", parents=[common], help="cost per converted call by week")
    cost.add_argument("--weeks", type=int, default=2)
    last = ops_sub.add_parser("last-failed", parents=[common], help="the last failed calls")
    last.add_argument("-n", type=int, default=10)
    halve = ops_sub.add_parser("halve", parents=[common], help="what would halve failures")
    halve.add_argument("--window", type=parse_duration, default=7 * 86400.0)


def run(args: argparse.Namespace, default_data_dir: Path) -> int:
    """Execute an ``ops`` subcommand; returns the exit status."""
    path = (args.data_dir or default_data_dir) / "events.sqlite3"
    if not path.exists():
        print(f"voicerail: no event store at {path}", file=sys.stderr)
        return 2
    db = reports.connect(path)
    now = time.time()
    try:
        if args.ops_command == "failures":
            answer: Any = reports.failures(db, window_s=args.window, now_s=now)
        elif args.ops_command == "cost":
            answer = reports.cost(db, weeks=args.weeks, now_s=now)
        elif args.ops_command == "last-failed":
            answer = reports.last_failed(db, n=args.n)
        else:
            answer = reports.halve(db, window_s=args.window, now_s=now)
    finally:
        db.close()
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        _print(args.ops_command, answer)
    return 0


def _print(command: str, answer: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if command == "failures":
        for label in ("now", "previous"):
            window = answer[label]
            console.print(
                f"[bold]{label}[/bold]: {window['failed_calls']}/{window['calls']} calls failed "
                f"({window['call_failure_rate']:.1%})"
            )
            table = Table("stage", "provider", "attempts", "failed", "rate", "first-attempt rate")
            for p in window["providers"]:
                table.add_row(
                    p["stage"],
                    p["provider"],
                    str(p["attempts"]),
                    str(p["failed"]),
                    f"{p['failure_rate']:.1%}",
                    f"{p['first_attempt_failure_rate']:.1%}",
                )
            console.print(table)
    elif command == "cost":
        table = Table("week ending", "calls", "converted", "cost $", "$/call", "$/converted")
        for week in answer["weeks"]:
            table.add_row(
                time.strftime("%Y-%m-%d", time.gmtime(week["end"])),
                str(week["calls"]),
                str(week["converted_calls"]),
                f"{week['cost_usd']:.4f}",
                _money(week["cost_per_call_usd"]),
                _money(week["cost_per_converted_call_usd"]),
            )
        console.print(table)
    elif command == "last-failed":
        for call in answer:
            console.print(
                f"[bold]{call['call_id']}[/bold] first failing stage: "
                f"{call['first_failing_stage']}  {call['error'] or ''}"
            )
            for e in call["events"]:
                mark = "[red]>>[/red]" if e["first_failure"] else "  "
                console.print(
                    f" {mark} {e['seq']:>3} {e['kind']:<22} {e['stage'] or '':<10}"
                    f" {e['provider'] or '':<14} {e['outcome'] or ''} {e['error_class'] or ''}"
                )
    else:
        console.print(
            f"{answer['failed_calls']}/{answer['calls']} calls failed "
            f"({answer['failure_rate']:.1%}); removing these causes leaves "
            f"{answer['failure_rate_after']:.1%}:"
        )
        for cause in answer["halving_set"]:
            console.print(f" - {cause['calls']} calls ({cause['share']:.0%}): {cause['fix']}")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
