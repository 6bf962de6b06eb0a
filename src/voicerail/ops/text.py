"""Text rendering of the ``voicerail ops`` answers (rich tables on the terminal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from voicerail.ops.credentials import CredentialStatus


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _day(at_s: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at_s))


def print_answer(command: str, answer: Any, console: Console | None = None) -> None:
    """Print one answer of :func:`voicerail.ops.cli.answer`."""
    console = console or Console()
    printers: dict[str, Callable[[Any, Console], None]] = {
        "failures": _failures,
        "cost": _cost,
        "last-failed": _last_failed,
        "halve": _halve,
    }
    printers[command](answer, console)


def _failures(answer: dict[str, Any], console: Console) -> None:
    for label in ("now", "previous"):
        window = answer[label]
        console.print(
            f"[bold]{label}[/bold]: {window['failed_calls']}/{window['calls']} calls failed "
            f"({window['call_failure_rate']:.1%}); {window['refused_calls']} refused at capacity"
        )
        table = Table(
            "stage", "provider", "attempts", "failed", "first-attempt rate", "calls failed here"
        )
        for p in window["providers"]:
            was = p.get("previous_first_attempt_failure_rate")
            rate = _pct(p["first_attempt_failure_rate"])
            if label == "now":
                rate += f" (was {_pct(was)})"
            table.add_row(
                p["stage"],
                p["provider"],
                str(p["attempts"]),
                str(p["failed"]),
                rate,
                f"{p['failed_calls']}/{p['calls']} ({_pct(p['call_failure_rate'])})",
            )
        console.print(table)


def _cost(answer: dict[str, Any], console: Console) -> None:
    table = Table("week ending", "calls", "converted", "cost $", "$/call", "$/converted", "change")
    for week in answer["weeks"]:
        change = week.get("change_per_converted_call")
        table.add_row(
            _day(week["end_s"]),
            str(week["calls"]),
            str(week["converted_calls"]),
            f"{week['cost_usd']:.4f}",
            _money(week["cost_per_call_usd"]),
            _money(week["cost_per_converted_call_usd"]),
            "" if change is None else f"{change:+.1%}",
        )
    console.print(table)
    by_provider = Table("week ending", "provider", "cost $", "$/call", "share")
    for week in answer["weeks"]:
        for p in week["by_provider"]:
            by_provider.add_row(
                _day(week["end_s"]),
                p["provider"],
                f"{p['cost_usd']:.4f}",
                _money(p["cost_per_call_usd"]),
                f"{p['share']:.0%}",
            )
    console.print(by_provider)


def _last_failed(answer: list[dict[str, Any]], console: Console) -> None:
    for call in answer:
        console.print(
            f"[bold]{call['call_id']}[/bold] first failing stage: "
            f"{call['first_failing_stage']}  {call['error'] or ''}"
        )
        for e in call["events"]:
            mark = "[red]>>[/red]" if e["first_failure"] else "  "
            console.print(
                f" {mark} {e['seq']:>3} {e['t_s']:7.2f}s {e['kind']:<22} {e['stage'] or '':<10}"
                f" {e['provider'] or '':<14} {e['outcome'] or ''} {e['error_class'] or ''}"
            )


def _halve(answer: dict[str, Any], console: Console) -> None:
    console.print(
        f"{answer['failed_calls']}/{answer['calls']} calls failed "
        f"({answer['failure_rate']:.1%}); removing these causes leaves "
        f"{answer['failure_rate_after']:.1%}:"
    )
    for cause in answer["halving_set"]:
        console.print(f" - {cause['calls']} calls ({cause['share']:.0%}): {cause['fix']}")
        if cause["config_change"]:
            console.print(f"     change: {cause['config_change']}")
    rest = answer["causes"][len(answer["halving_set"]) :]
    if rest:
        console.print("other causes:")
        for cause in rest:
            where = (
                f"{cause['stage'] or '-'} {cause['provider'] or '-'} {cause['error_class'] or ''}"
            )
            console.print(f" - {cause['calls']} calls ({cause['share']:.0%}): {where}")


def print_credentials(statuses: list[CredentialStatus], console: Console | None = None) -> None:
    """Print the credential registry with states and days to expiry."""
    console = console or Console()
    table = Table("name", "variable", "kind", "state", "expires", "days left", "detail")
    for s in statuses:
        colour = {"ok": "green", "unchecked": "white", "unverified": "yellow"}.get(s.state, "red")
        table.add_row(
            s.name,
            f"${s.env}",
            s.kind,
            f"[{colour}]{s.state}[/{colour}]",
            _day(s.expires_at) if s.expires_at else "-",
            "-" if s.days_left is None else f"{s.days_left:.0f}",
            s.detail,
        )
    console.print(table)
