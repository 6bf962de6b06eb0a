"""The ``simulate`` command line: options, errors, and a small run end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from voicerail.events.store import SQLiteEventStore
from voicerail.sim import cli

SUITE = """
name: cli-small
turn_gap_s: 0.6
variables: {name: [Ann Lee, Bob Moe]}
scenarios:
  - name: hello
    token: "{name}"
    turns: [{say: "My name is {name}."}, {say: "Goodbye."}]
    expect: {outcome: completed, must_say: ["{name}"], hung_up_by: agent}
"""


def test_add_parser_registers_simulate_with_its_options() -> None:
    """``add_parser`` adds a ``simulate`` sub-command with the documented options."""
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "s.yaml",
            "--serve",
            "a.yaml",
            "--calls",
            "5",
            "--concurrency",
            "2",
            "--ramp",
            "1.5",
            "--impair",
            "delay=50",
            "--report",
            "out",
        ]
    )
    assert (args.calls, args.concurrency, args.ramp, args.impair) == (5, 2, 1.5, "delay=50")
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "s.yaml", "--url", "u", "--serve", "a"])


def test_http_base_accepts_http_and_media_urls() -> None:
    """``--url`` may be the server's base URL or its media WebSocket URL."""
    assert cli.http_base("ws://127.0.0.1:8080/twilio/media") == "http://127.0.0.1:8080"
    assert cli.http_base("https://voice.example.com/") == "https://voice.example.com"
    assert cli.http_base("127.0.0.1:9") == "http://127.0.0.1:9"


def test_a_bad_scenario_file_exits_2_with_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file is reported in one line naming the field; exit status 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: [{name: a, turns: [{say: hi, dtmf: '1'}]}]\n", encoding="utf-8")
    assert cli.main([str(bad), "--url", "http://127.0.0.1:9"]) == 2
    assert "scenarios.0.turns.0: a turn needs exactly one of" in capsys.readouterr().out


def test_schema_is_printed_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """``--schema`` prints the JSON Schema of scenario files."""
    assert cli.main(["--schema"]) == 0
    assert "TurnSpec" in json.loads(capsys.readouterr().out)["$defs"]


def test_simulate_serves_the_echo_agent_and_writes_a_report(tmp_path: Path) -> None:
    """Two concurrent callers against a started fake-provider server pass; reports are written."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    status = cli.main(
        [
            str(suite),
            "--serve",
            "echo",
            "--providers",
            "fake",
            "--vad",
            "energy",
            "--calls",
            "2",
            "--concurrency",
            "2",
            "--report",
            str(tmp_path / "report"),
            "--data-dir",
            str(tmp_path / "server"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert status == 0, json.dumps(report["calls"], indent=1)[:3000]
    assert report["summary"]["passed"] == 2
    assert report["server"]["resources"]["peak_active_calls"] >= 1
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000


def test_a_simulated_run_fails_over_between_the_fakes_a_deployment_file_names(
    tmp_path: Path,
) -> None:
    """With the first fake TTS hung by a fault file, every caller still hears replies: the
    simulated server's Router fails over to the second, as production does."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    deployment = tmp_path / "voicerail.yaml"
    deployment.write_text(
        "providers:\n  tts: [fake-tts, {fake-tts: {name: backup-tts}}]\n"
        "routing:\n  tts: {ttfb_timeout_s: 0.3, hedge: false}\n",
        encoding="utf-8",
    )
    faults = tmp_path / "faults.yaml"
    faults.write_text("fake-tts: {hang_rate: 1.0}\n", encoding="utf-8")
    args = [str(suite), "--serve", "echo", "--providers", "fake", "--vad", "energy"]
    args += ["--providers-file", str(deployment), "--faults", str(faults)]
    args += ["--calls", "1", "--report", str(tmp_path / "report")]
    args += ["--data-dir", str(tmp_path / "server"), "--cache-dir", str(tmp_path / "cache")]
    status = cli.main([*args, "--no-progress"])
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert status == 0, json.dumps(report["calls"], indent=1)[:3000]
    store = SQLiteEventStore(tmp_path / "server" / "events.sqlite3")
    try:
        [call] = store.calls(limit=5)
        attempts = {(e.provider, e.outcome) for e in store.events(call.call_id) if e.stage == "tts"}
    finally:
        store.close()
    assert {("fake-tts", "error"), ("backup-tts", "ok")} <= attempts
