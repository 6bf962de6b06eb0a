"""Reports of a load run: a dict (``report.json``), a terminal summary, ``report.html``.

The HTML page is self-contained: its pictures (latency histograms, the
server's CPU and memory over time, per-call timelines) are PNGs drawn with
matplotlib and embedded as ``data:`` URIs, so the file can be mailed or
archived as one piece.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from voicerail.sim.runner import RunResult
from voicerail.sim.stats import Histogram, pass_k, summarize

MAX_TIMELINES = 40


def build_report(run: RunResult, *, suite: str = "suite") -> dict[str, Any]:
    """The run as a JSON-ready dict (the content of ``report.json``)."""
    calls = [_call_entry(run, check) for check in run.checks]
    latencies = [ms for c in run.checks for ms in c.latencies_ms]
    shares = [ms for c in run.checks for ms in c.runtime_share_ms]
    inbound_lags = [ms for c in run.checks for ms in c.inbound_lag_ms]
    jitter = Histogram()
    for result in run.results.values():
        jitter.extend(result.arrival_jitter_ms)
    failures = Counter(check for c in run.checks for check, _ in c.failures)
    outcomes = Counter(str(c.outcome) for c in run.checks)
    gaps = [g * 1000 for r in run.results.values() for g in r.audio_gaps_s]
    arrival_gaps = [g * 1000 for r in run.results.values() for g in r.arrival_gaps_s]
    contamination = run.contamination
    resources = run.server_resources or {}
    return {
        "suite": suite,
        "passed": run.passed,
        "target": {
            "base_url": run.target.base_url,
            "label": run.target.label,
            "pid": run.target.pid,
            "has_api": run.target.has_api,
            # The instrumented fake server: its latencies are the fakes' (gates.py).
            "fake_providers": run.target.has_sim_stats,
        },
        "options": {
            "calls": len(run.plans),
            "concurrency": run.options.concurrency,
            "ramp_s": run.options.ramp_s,
            "impairment": {
                "delay_ms": run.options.impairment.delay_s * 1000,
                "jitter_ms": run.options.impairment.jitter_s * 1000,
                "loss_percent": run.options.impairment.loss * 100,
            },
        },
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        "summary": {
            "calls": len(run.checks),
            "passed": sum(1 for c in run.checks if c.passed and c.refused is None),
            "failed": sum(1 for c in run.checks if not c.passed),
            "refused": sum(1 for c in run.checks if c.refused is not None),
            "failed_at_caller": len(run.errors),
            "outcomes": dict(outcomes),
            "failures_by_check": dict(failures),
            "latency_ms": summarize(latencies),
            "runtime_share_ms": summarize(shares),
            "inbound_lag_ms": summarize(inbound_lags),
            "audio_gaps": {
                "count": len(gaps),
                "calls": sum(1 for r in run.results.values() if r.audio_gaps_s),
                "ms": summarize(gaps),
            },
            "arrival_gaps_over_40ms": {"count": len(arrival_gaps), "ms": summarize(arrival_gaps)},
            "outbound_jitter_ms": jitter.summary(),
            "inbound_jitter_ms": (run.server_stats or {}).get("inbound_jitter_ms"),
            "protocol_errors": failures.get("protocol", 0),
            "contamination": {
                "findings": len(contamination.findings),
                "calls_checked": contamination.calls_checked,
                "own_tokens_seen": contamination.own_tokens_seen,
                "spoken_tokens": contamination.spoken_tokens,
            },
            "server_cpu_percent_per_call": resources.get("cpu_percent_per_call"),
            "server_rss_mb_per_call": (
                resources["rss_per_call_bytes"] / 2**20
                if resources.get("rss_per_call_bytes") is not None
                else None
            ),
        },
        "server": {
            "resources": run.server_resources,
            "series": run.server_series,
            "stats": run.server_stats,
        },
        "simulator": run.simulator,
        "contamination": [
            {"owner": f.owner, "found_in": f.found_in, "token": f.token, "where": f.where}
            for f in contamination.findings
        ],
        "pass_k": pass_k(calls),
        "calls": calls,
    }


def _call_entry(run: RunResult, check: Any) -> dict[str, Any]:
    plan = check.plan
    result = run.results.get(plan.index)
    record = run.server_records.get(plan.index) or {}
    entry: dict[str, Any] = {
        "index": plan.index,
        "scenario": plan.scenario,
        "token": plan.token,
        "sim_token": plan.sim_token,
        "call_id": record.get("call_id"),
        "outcome": check.outcome,
        "passed": check.passed,
        "refused": check.refused,
        "failures": [{"check": c, "message": m} for c, m in check.failures],
        "unchecked": check.unchecked,
        "latencies_ms": [round(ms, 1) for ms in check.latencies_ms],
        "runtime_share_ms": [round(ms, 2) for ms in check.runtime_share_ms],
        "inbound_lag_ms": [round(ms, 1) for ms in check.inbound_lag_ms],
        "error": run.errors.get(plan.index),
    }
    if result is not None:
        entry.update(
            {
                "call_sid": result.call_sid,
                "hung_up_by": result.hung_up_by,
                "hung_up_mid_call": result.hung_up_mid_call,
                "connected_at": result.connected_at,
                "ended_at": result.ended_at,
                "clears_at": result.clears_at,
                "audio_gaps_ms": [round(g * 1000) for g in result.audio_gaps_s],
                "arrival_gaps_ms": [round(g * 1000) for g in result.arrival_gaps_s],
                "frames_dropped": result.frames_dropped,
                "turns": [
                    {
                        "label": t.label,
                        "kind": t.kind,
                        "started_at": t.started_at,
                        "ended_at": t.ended_at,
                        "speech_ended_at": t.speech_ended_at,
                        "first_agent_audio_at": t.first_agent_audio_at,
                        "first_audible_at": t.first_audible_at,
                    }
                    for t in result.turns
                ],
                "replies": [
                    {"started_at": r.started_at, "ended_at": r.ended_at, "frames": r.num_frames}
                    for r in result.replies
                ],
            }
        )
    return entry


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    html_path = directory / "report.html"
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


# -- terminal ------------------------------------------------------------------------


def _ms(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_table(report: dict[str, Any]) -> Any:
    """A rich table of the run's headline figures."""
    from rich.table import Table

    s = report["summary"]
    lat, share = s["latency_ms"], s["runtime_share_ms"]
    sim = report["simulator"]
    table = Table(title=f"voicerail simulate — {report['suite']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    verdict = "[green]PASSED[/green]" if report["passed"] else "[red]FAILED[/red]"
    table.add_row("verdict", verdict)
    table.add_row(
        "calls",
        f"{s['calls']} ({s['passed']} passed, {s['failed']} failed, {s['refused']} refused, "
        f"{s['failed_at_caller']} not placed) at concurrency {report['options']['concurrency']}",
    )
    table.add_row("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(s["outcomes"].items())))
    if s["failures_by_check"]:
        table.add_row(
            "failed checks",
            ", ".join(f"{k}: {v}" for k, v in sorted(s["failures_by_check"].items())),
        )
    table.add_row(
        "latency at the ear (ms)",
        f"p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
        f"max {_ms(lat['max'])}  ({lat['count']} turns)",
    )
    table.add_row(
        "runtime's own share (ms)",
        f"p50 {_ms(share['p50'], 1)}  p99 {_ms(share['p99'], 1)}  max {_ms(share['max'], 1)}",
    )
    lag = s.get("inbound_lag_ms") or {}
    table.add_row(
        "turn end seen late by (ms)",
        f"p50 {_ms(lag.get('p50'), 1)}  p99 {_ms(lag.get('p99'), 1)}  max {_ms(lag.get('max'), 1)}",
    )
    gaps = s["audio_gaps"]
    table.add_row("audio gaps at the ear", f"{gaps['count']} in {gaps['calls']} calls")
    out_j, in_j = s["outbound_jitter_ms"], s["inbound_jitter_ms"] or {}
    table.add_row(
        "frame jitter p99 (ms)",
        f"outbound {_ms(out_j.get('p99'), 1)}  inbound {_ms(in_j.get('p99'), 1)}",
    )
    table.add_row("protocol errors", str(s["protocol_errors"]))
    c = s["contamination"]
    table.add_row(
        "contamination",
        f"{c['findings']} findings in {c['calls_checked']} calls "
        f"(own token visible in {c['own_tokens_seen']}/{c['spoken_tokens']})",
    )
    cpu, rss = s["server_cpu_percent_per_call"], s["server_rss_mb_per_call"]
    table.add_row("server per call", f"CPU {_ms(cpu, 2)} % of a core, memory {_ms(rss, 2)} MB")
    send_lag = sim.get("send_lag_ms", {})
    table.add_row(
        "simulator lag (ms)",
        f"frame send p50 {_ms(send_lag.get('p50'), 1)} p99 {_ms(send_lag.get('p99'), 1)} "
        f"max {_ms(send_lag.get('max'), 1)}; loop p99 "
        f"{_ms(sim.get('loop_lag_ms', {}).get('p99'), 1)}",
    )
    return table


def failures_table(report: dict[str, Any], limit: int = 20) -> Any:
    """A rich table of the first failures."""
    from rich.table import Table

    table = Table("call", "scenario", "check", "message", title="failures")
    shown = 0
    for call in report["calls"]:
        for failure in call["failures"]:
            if shown >= limit:
                return table
            table.add_row(
                str(call["index"]), call["scenario"], failure["check"], failure["message"]
            )
            shown += 1
    return table


def simulator_warning(report: dict[str, Any], threshold_ms: float = 10.0) -> str | None:
    """A warning when the simulator itself was too late to trust the figures."""
    send_lag = report["simulator"].get("send_lag_ms", {})
    p99 = send_lag.get("p99")
    if p99 is not None and p99 > threshold_ms:
        return (
            f"the simulator's own frame sends were late by {p99:.1f} ms at p99 "
            f"(over {threshold_ms:.0f} ms): the machine is overloaded, figures are suspect"
        )
    return None


# -- HTML ------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_histograms(report: dict[str, Any]) -> str:
    """Latency at the caller's ear and the runtime's own share, as one PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = [ms for c in report["calls"] for ms in c["latencies_ms"]]
    shares = [ms for c in report["calls"] for ms in c["runtime_share_ms"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].hist(latencies or [0], bins=40, color="#3a7bd5")
    axes[0].set_title("turn latency at the caller's ear")
    axes[0].set_xlabel("ms")
    axes[0].set_ylabel("turns")
    axes[1].hist(shares or [0], bins=40, color="#e07b39")
    axes[1].set_title("runtime's own share of a turn")
    axes[1].set_xlabel("ms")
    return _png(fig)


def plot_server(report: dict[str, Any]) -> str | None:
    """The server's CPU, memory and calls in progress over time, or None without samples."""
    series = report["server"].get("series") or []
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = [s["at_s"] for s in series]
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
    axes[0].plot(at, [s["cpu_percent"] for s in series], color="#c0392b")
    axes[0].set_title("server CPU (% of one core)")
    axes[1].plot(at, [s["rss_mb"] for s in series], color="#8e44ad")
    axes[1].set_title("server memory (MB)")
    axes[2].plot(at, [s["active_calls"] for s in series], color="#27ae60")
    axes[2].set_title("calls in progress")
    for ax in axes:
        ax.set_xlabel("s")
    return _png(fig)


def plot_timelines(report: dict[str, Any], limit: int = MAX_TIMELINES) -> str | None:
    """Per-call timelines (caller speech, agent audio, clears, hang-ups), one PNG."""
    calls = [c for c in report["calls"] if c.get("turns") is not None][:limit]
    if not calls:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(c["connected_at"] for c in calls)
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(calls) + 1.2))
    for row, call in enumerate(calls):
        y = len(calls) - row
        ax.broken_barh(
            [(call["connected_at"] - t0, call["ended_at"] - call["connected_at"])],
            (y - 0.4, 0.8),
            facecolors="#eeeeee",
        )
        speech = [
            (t["started_at"] - t0, max(t["ended_at"] - t["started_at"], 0.05))
            for t in call["turns"]
            if t["kind"] == "speech"
        ]
        ax.broken_barh(speech, (y - 0.35, 0.3), facecolors="#3a7bd5")
        agent = [
            (r["started_at"] - t0, max(r["ended_at"] - r["started_at"], 0.02))
            for r in call["replies"]
        ]
        ax.broken_barh(agent, (y + 0.05, 0.3), facecolors="#27ae60")
        for at in call["clears_at"]:
            ax.plot([at - t0], [y], marker="x", color="#c0392b")
        for t in call["turns"]:
            if t["kind"] == "dtmf":
                ax.plot([t["started_at"] - t0], [y], marker="d", color="#8e44ad")
            elif t["kind"] == "hangup":
                ax.plot([t["started_at"] - t0], [y], marker="|", markersize=14, color="black")
    ax.set_yticks(
        [len(calls) - i for i in range(len(calls))],
        [f"{c['index']} {c['scenario'][:18]}{'' if c['passed'] else ' ✗'}" for c in calls],
        fontsize=7,
    )
    ax.set_xlabel("seconds since the first call connected")
    ax.set_title("per-call timelines: caller speech (blue), agent audio (green), clear (x)")
    return _png(fig)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
.pass { color: #1e8449; font-weight: bold; } .fail { color: #c0392b; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
"""


def _fmt_pass_k(value: dict[str, Any] | None) -> str:
    if not value or value.get("share") is None:
        return "–"
    failing = [
        f"{name} {v['passed']}/{v['runs']}"
        for name, v in sorted(value["scenarios"].items())
        if not v["pass_k"]
    ]
    return f"{value['share']:.2f}" + (f" (failing: {', '.join(failing)})" if failing else "")


def render_html(report: dict[str, Any]) -> str:
    """The self-contained HTML page of a report."""
    s = report["summary"]
    verdict = (
        '<span class="pass">PASSED</span>'
        if report["passed"]
        else '<span class="fail">FAILED</span>'
    )
    rows = [
        ("verdict", verdict),
        (
            "calls",
            f"{s['calls']} ({s['passed']} passed, {s['failed']} failed, {s['refused']} refused)",
        ),
        ("concurrency", str(report["options"]["concurrency"])),
        ("outcomes", _esc(", ".join(f"{k}: {v}" for k, v in sorted(s["outcomes"].items())))),
        ("failed checks", _esc(json.dumps(s["failures_by_check"]))),
        ("latency at the ear (ms)", _esc(_fmt_summary(s["latency_ms"]))),
        ("runtime's own share (ms)", _esc(_fmt_summary(s["runtime_share_ms"], 2))),
        ("turn end seen late by (ms)", _esc(_fmt_summary(s.get("inbound_lag_ms") or {}, 1))),
        ("audio gaps", f"{s['audio_gaps']['count']} in {s['audio_gaps']['calls']} calls"),
        ("outbound frame jitter (ms)", _esc(_fmt_summary(s["outbound_jitter_ms"], 1))),
        ("inbound frame jitter (ms)", _esc(_fmt_summary(s["inbound_jitter_ms"] or {}, 1))),
        ("contamination", _esc(json.dumps(s["contamination"]))),
        ("pass^k (scenarios passing every run)", _esc(_fmt_pass_k(report.get("pass_k")))),
        ("server CPU per call (% of a core)", _esc(_ms(s["server_cpu_percent_per_call"], 2))),
        ("server memory per call (MB)", _esc(_ms(s["server_rss_mb_per_call"], 2))),
        (
            "simulator send lag (ms)",
            _esc(_fmt_summary(report["simulator"].get("send_lag_ms", {}), 1)),
        ),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>voicerail simulate — {_esc(report['suite'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>voicerail simulate — {_esc(report['suite'])}</h1>",
        "<table id='summary'>",
        *(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows),
        "</table>",
        "<h2>Latency</h2>",
        f"<img id='latency' alt='latency histograms' src='{plot_histograms(report)}'>",
    ]
    server_png = plot_server(report)
    if server_png:
        parts += [
            "<h2>Server</h2>",
            f"<img id='server' alt='server CPU and memory' src='{server_png}'>",
        ]
    timelines = plot_timelines(report)
    if timelines:
        parts += [
            "<h2>Per-call timelines</h2>",
            f"<img id='timelines' alt='per-call timelines' src='{timelines}'>",
        ]
    if report.get("gates"):
        from voicerail.compliance.gates_cli import gates_html

        parts += ["<h2>Go-live gates</h2>", gates_html(report["gates"])]
    parts += ["<h2>Calls</h2>", _calls_table(report), "</body></html>"]
    return "\n".join(parts)


def _calls_table(report: dict[str, Any]) -> str:
    lines = [
        "<table id='calls'><tr><th>#</th><th>scenario</th><th>token</th><th>outcome</th>"
        "<th>latencies (ms)</th><th>result</th></tr>"
    ]
    for call in report["calls"]:
        result = (
            "<span class='pass'>pass</span>"
            if call["passed"]
            else "<span class='fail'>fail</span>: "
            + "; ".join(_esc(f"{f['check']}: {f['message']}") for f in call["failures"])
        )
        lines.append(
            f"<tr><td>{call['index']}</td><td>{_esc(call['scenario'])}</td>"
            f"<td>{_esc(call['token'] or '')}</td><td>{_esc(str(call['outcome']))}</td>"
            f"<td>{_esc(', '.join(f'{ms:.0f}' for ms in call['latencies_ms']))}</td>"
            f"<td>{result}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _fmt_summary(summary: dict[str, Any], digits: int = 0) -> str:
    if not summary or not summary.get("count"):
        return "–"
    return (
        f"p50 {_ms(summary.get('p50'), digits)}, p90 {_ms(summary.get('p90'), digits)}, "
        f"p99 {_ms(summary.get('p99'), digits)}, max {_ms(summary.get('max'), digits)} "
        f"(n={summary['count']})"
    )


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
