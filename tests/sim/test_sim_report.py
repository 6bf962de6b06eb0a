"""Reports: report.json content, and report.html rendering in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from voicerail.sim.caller import CallResult, ReplySpan, TurnTiming
from voicerail.sim.checks import Contamination
from voicerail.sim.report import build_report, simulator_warning, summary_table, write_report
from voicerail.sim.runner import RunOptions, RunResult, Target, _check
from voicerail.sim.scenario import expand, parse_suite

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")


def synthetic_run() -> RunResult:
    """Two calls with made-up but consistent measurements; call 1 leaked call 0's name."""
    raw = {
        "variables": {"name": ["Ann Lee", "Bob Moe"]},
        "scenarios": [{"name": "s", "token": "{name}", "turns": [{"say": "I am {name}"}]}],
    }
    plans = expand(parse_suite(raw), calls=2)
    run = RunResult(target=Target(base_url="http://127.0.0.1:1"), options=RunOptions(), plans=plans)
    for plan in plans:
        t0 = 1000.0 + plan.index
        result = CallResult(call_sid=f"CA{plan.index}", stream_sid="MZ")
        result.connected_at, result.ended_at = t0, t0 + 9
        result.turns.append(
            TurnTiming(
                "say", t0 + 3, t0 + 4, t0 + 4.6, speech_ended_at=t0 + 4, first_audible_at=t0 + 4.6
            )
        )
        result.replies += [ReplySpan(t0 + 0.2, t0 + 2.5, 110), ReplySpan(t0 + 4.6, t0 + 6, 70)]
        result.arrival_jitter_ms.extend([0.5, 1.0, 2.0])
        result.send_lag_ms.extend([0.3, 0.4, 0.9])
        run.results[plan.index] = result
        run.server_records[plan.index] = {
            "call_id": f"vr_{plan.index}",
            "outcome": "completed",
            "data": {},
            "events": [
                {"kind": "DialogDecided", "pii": {"agent_text": f"Hi {plans[0].token}"}, "data": {}}
            ],
        }
    run.server_series = [
        {"at_s": 0.5 * k, "cpu_percent": 20.0 + k, "rss_mb": 80.0, "active_calls": 2}
        for k in range(10)
    ]
    run.simulator = {"send_lag_ms": {"count": 6, "p50": 0.4, "p99": 0.9, "max": 0.9}}
    _check(run)
    return run


def test_report_json_counts_calls_failures_and_contamination() -> None:
    """The report sums up the calls and lists the leaked token with where it was found."""
    report = build_report(synthetic_run(), suite="demo")
    assert report["passed"] is False
    assert report["summary"]["calls"] == 2
    assert report["summary"]["failures_by_check"] == {"contamination": 1}
    first_token = report["calls"][0]["token"]
    assert report["contamination"] == [
        {"owner": 0, "found_in": 1, "token": first_token, "where": "agent speech"}
    ]
    assert report["summary"]["latency_ms"]["p50"] == pytest.approx(600.0)
    assert json.loads(json.dumps(report, default=str))["suite"] == "demo"
    assert summary_table(report).row_count > 5
    assert simulator_warning(report) is None


def test_simulator_warning_when_its_own_clock_was_late() -> None:
    """A simulator whose frame sends were late by over 10 ms at p99 says so."""
    report = build_report(synthetic_run())
    report["simulator"]["send_lag_ms"]["p99"] = 35.0
    warning = simulator_warning(report)
    assert warning is not None and "35.0 ms" in warning


def test_contamination_entry_is_a_value() -> None:
    """Findings are small frozen values."""
    assert Contamination(0, 1, "x", "events") == Contamination(0, 1, "x", "events")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs chromium-headless-shell (Debian package)",
)
def test_report_html_renders_with_its_pictures_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium loads report.html, its three plots decode as images, and the page is not blank."""
    _, html_path = write_report(build_report(synthetic_run(), suite="demo"), tmp_path)
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    # The page records each picture's decoded width in its title; --dump-dom shows it.
    probe = tmp_path / "probe.html"
    probe.write_text(
        html_path.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>window.addEventListener('load', () => { document.title = "
            "'widths:' + [...document.images].map(i => i.naturalWidth).join(','); });"
            "</script></body>",
        ),
        encoding="utf-8",
    )
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    widths = dom.split("<title>widths:", 1)[1].split("<", 1)[0].split(",")
    assert len(widths) == 3 and all(int(w) > 300 for w in widths), widths
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1600", html_path.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=100_000)
    assert colours is None or len(colours) > 50  # text, tables and plots, not a blank page


def test_pass_k_counts_a_scenario_only_when_every_run_passed():
    """τ-bench's pass^k: 3 of 4 runs passing is a failing scenario."""
    from voicerail.sim.stats import pass_k

    calls = [
        *({"scenario": "book", "passed": p, "refused": None} for p in (True, True, True, False)),
        {"scenario": "hours", "passed": True, "refused": None},
        {"scenario": "hours", "passed": False, "refused": "busy"},  # refused: not a run
    ]
    result = pass_k(calls)
    assert result["share"] == 0.5
    assert result["scenarios"]["book"] == {"runs": 4, "passed": 3, "pass_k": False}
    assert result["scenarios"]["hours"] == {"runs": 1, "passed": 1, "pass_k": True}
    assert pass_k([]) == {"share": None, "scenarios": {}}


def test_the_report_names_fake_providers_and_renders_a_gates_section() -> None:
    """A report carries whether its server had fake providers; with ``gates`` in it the
    HTML has one row per check, a failed one with its fix."""
    from voicerail.sim.report import render_html

    report = build_report(synthetic_run(), suite="demo")
    assert report["target"]["fake_providers"] is False
    assert "id='gates'" not in render_html(report)
    report["gates"] = {
        "context": {"passed": True, "checks": [{"check": "classified", "passed": True,
                    "evidence": "ok", "fix": "", "judged": True}]},
        "conversation": {"passed": False, "checks": [
            {"check": "pass_k", "passed": False, "evidence": "pass^k 0.50 <b>",
             "fix": "agent.yaml: compliance.gates.pass_k_bar", "judged": True},
            {"check": "latency_p95", "passed": True, "evidence": "p95 900 ms",
             "fix": "", "judged": False}]},
        "passed": False,
    }  # fmt: skip
    page = render_html(report)
    assert "<h2>Go-live gates</h2>" in page and "id='gates-verdict'><span class='fail'>" in page
    assert "agent.yaml: compliance.gates.pass_k_bar" in page and "&lt;b&gt;" in page
    assert "<td>latency_p95</td><td><span>reported</span>" in page
    assert page.split("id='gates'>")[1].split("</table>")[0].count("<tr><td>") == 3
