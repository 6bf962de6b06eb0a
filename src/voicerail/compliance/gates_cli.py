"""``voicerail gates``: the five go-live gates as a command CI can run.

::

    voicerail gates --agent AGENT.yaml [--config voicerail.yaml]
                    [--simulation REPORT.json ...] [--data-dir DIR] [--json]
                    [--providers fake|embedded] [--judge-timing] [--report DIR]

Without ``--simulation`` it runs the suites the agent file names
(``compliance.gates.suites``) with ``voicerail simulate --serve AGENT``, each
within ``--suite-timeout`` seconds. Exit status: 0 every gate passed, 1 a gate
failed, 2 a file could not be read or is invalid (the message names it).

CI mode is the default: the suites run against the simulator's fake providers
(``--providers fake``: the real server, VAD, codecs and dialog, with cloud-like
fake speech providers that hear exactly what the caller said), so what the
conversation gate judges is the agent's behaviour (the scenarios' outcomes,
bookings, phrases, barge-in, handoffs), which does not depend on the machine.
Latency at the ear is then the fakes' simulated delays plus the machine's load:
it is reported against the agent's target (``compliance.gates.latency_p95_ms``)
and not judged, nor are the scenarios' timing checks (a turn over its
``max_turn_latency_ms``, gaps in the agent's audio: ``gates.py``, the
conversation gate). ``--providers embedded``
runs the suites on the embedded speech models (minutes of model loading and
CPU-bound recognition on 2 cores) and judges timing too; so do ``--simulation``
reports from real providers, and ``--judge-timing`` forces it.

``--report DIR`` keeps each suite's simulate report (``DIR/<suite>/report.json``
and ``report.html``) with a "Go-live gates" section holding every gate's checks,
and writes ``DIR/gates.json``.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from voicerail.compliance.gates import GATES, Check, GateInputs, check_all
from voicerail.compliance.policy import deployment_compliance, load_policy
from voicerail.errors import ConfigError


def add_gates_parser(sub: Any) -> None:
    """Add ``gates`` to the main parser's subparsers."""
    gates = sub.add_parser("gates", help="check the five go-live gates (exit 1 when one fails)")
    gates.add_argument("--agent", type=Path, required=True, help="the agent file")
    gates.add_argument("--config", type=Path, default=None, help="the deployment file")
    gates.add_argument(
        "--simulation", type=Path, action="append", default=[], metavar="REPORT.json"
    )
    gates.add_argument("--data-dir", type=Path, default=None, help="to verify its audit log")
    gates.add_argument("--suite-timeout", type=float, default=600.0, metavar="SECONDS")
    gates.add_argument("--json", action="store_true", help="an object keyed by gate name")
    gates.add_argument(
        "--providers",
        choices=["fake", "embedded"],
        default="fake",
        help="run the suites on the simulator's fake providers (CI, the default) "
        "or the embedded speech models",
    )
    gates.add_argument(
        "--judge-timing",
        action="store_true",
        help="judge latency and the scenarios' timing checks even with fake providers",
    )
    gates.add_argument("--report", type=Path, default=None, metavar="DIR",
                       help="keep the suites' reports, with a gates section")  # fmt: skip


def load_inputs(args: argparse.Namespace) -> GateInputs:
    """Read every file the gates need.

    Raises:
        ConfigError: a file is missing, not YAML/JSON, or invalid.
    """
    agent_path = str(args.agent)
    raw = _yaml(args.agent)
    _validate_agent(args.agent, raw)
    policy = load_policy(raw.get("compliance"), source=agent_path)
    deployment = deployment_compliance(args.config)
    fallbacks_error = None
    if deployment.handoff_fallbacks:
        from voicerail.server.handoff import parse_fallbacks

        try:
            parse_fallbacks(deployment.handoff_fallbacks)
        except (ConfigError, ValueError) as exc:
            fallbacks_error = str(exc)
    reports = [_report(p) for p in args.simulation]
    if not args.simulation and policy.gates.suites:
        reports = run_suites(
            args.agent, policy.gates.suites, args.suite_timeout, providers=args.providers
        )
    audit = None
    if args.data_dir is not None and (args.data_dir / "audit.sqlite3").exists():
        from voicerail.compliance.audit import AuditLog

        log = AuditLog(args.data_dir / "audit.sqlite3")
        try:
            result = log.verify()
        finally:
            log.close()
        audit = (result.entries, [f"entry {s}: {t}" for s, t in result.problems])
    return GateInputs(
        agent_path=agent_path,
        agent=raw,
        policy=policy,
        deployment_path=str(args.config) if args.config else "",
        deployment=deployment,
        reports=reports,
        audit=audit,
        fallbacks_error=fallbacks_error,
        judge_timing=True if args.judge_timing else None,
    )


def _yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", source=str(path))
    return raw


def _validate_agent(path: Path, raw: dict[str, Any]) -> None:
    """The agent file loads as the server would load it."""
    if "llm" in raw:
        from voicerail.dialog.llm_agent import load_llm_agent_spec

        load_llm_agent_spec(path)
    else:
        from voicerail.dialog.flow_config import load_agent_spec

        load_agent_spec(path)


def _report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not a simulation report: {exc}", source=str(path)) from exc
    if not isinstance(report, dict) or "calls" not in report:
        raise ConfigError("not a simulation report (no 'calls')", source=str(path))
    return report


def run_suites(
    agent: Path, suites: list[str], timeout_s: float, *, providers: str = "fake"
) -> list[dict[str, Any]]:
    """Run each suite against a server for ``agent`` with ``providers`` (``fake`` or
    ``embedded``, ``voicerail simulate --providers``); their reports.

    Raises:
        ConfigError: a suite did not produce a report in time.
    """
    reports = []
    for suite in suites:
        path = (agent.parent / suite).resolve()
        with tempfile.TemporaryDirectory(prefix="voicerail-gates-") as out:
            command = [sys.executable, "-m", "voicerail.cli", "simulate", str(path),
                       "--serve", str(agent), "--providers", providers, "--report", out,
                       "--no-progress"]  # fmt: skip
            try:
                done = subprocess.run(command, timeout=timeout_s, capture_output=True, check=False)
            except subprocess.TimeoutExpired as exc:
                raise ConfigError(
                    f"suite did not finish in {timeout_s:.0f} s", source=suite
                ) from exc
            report_path = Path(out) / "report.json"
            if not report_path.exists():
                why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise ConfigError(
                    f"the suite produced no report (exit {done.returncode}): {why[0]}",
                    source=str(path),
                )
            reports.append(_report(report_path))
    return reports


def render(results: dict[str, list[Check]]) -> str:
    """The text form: one line per check, failures with their fix."""
    lines = []
    for gate in GATES:
        checks = results[gate]
        ok = all(c.passed for c in checks)
        lines.append(f"{'PASS' if ok else 'FAIL'} {gate}")
        for c in checks:
            mark = "info" if not c.judged else "ok  " if c.passed else "FAIL"
            lines.append(f"  {mark} {c.name}: {c.evidence}")
            if not c.passed:
                lines.append(f"       fix: {c.fix}")
    return "\n".join(lines)


def as_json(results: dict[str, list[Check]]) -> dict[str, Any]:
    """The ``--json`` form: an object keyed by the five gate names."""
    body: dict[str, Any] = {
        gate: {"passed": all(c.passed for c in results[gate]),
               "checks": [c.to_dict() for c in results[gate]]}
        for gate in GATES
    }  # fmt: skip
    body["passed"] = all(body[gate]["passed"] for gate in GATES)
    return body


def write_reports(directory: Path, reports: list[dict[str, Any]], gates: dict[str, Any]) -> None:
    """``--report DIR``: each suite's report with the gates section, and ``gates.json``."""
    from voicerail.sim.report import write_report

    directory.mkdir(parents=True, exist_ok=True)
    for index, report in enumerate(reports):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(report.get("suite") or f"suite-{index}"))
        write_report({**report, "gates": gates}, directory / name)
    (directory / "gates.json").write_text(json.dumps(gates, indent=2), encoding="utf-8")


def run_gates(args: argparse.Namespace) -> int:
    """Execute ``voicerail gates``; returns the exit status (errors propagate as ConfigError)."""
    inputs = load_inputs(args)
    results = check_all(inputs)
    if args.report is not None:
        write_reports(args.report, inputs.reports, as_json(results))
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        print(render(results))
    return 0 if all(c.passed for checks in results.values() for c in checks) else 1


def gates_html(gates: dict[str, Any]) -> str:
    """The gates section: ``voicerail gates --json``'s object (``compliance/gates_cli.py``)
    as one row per check, each failed one with the file and field to fix."""
    verdict = "<span class='pass'>PASSED</span>" if gates.get("passed") else (
        "<span class='fail'>FAILED</span>")  # fmt: skip
    lines = [f"<p id='gates-verdict'>{verdict}</p>", "<table id='gates'><tr><th>gate</th>"
             "<th>check</th><th>result</th><th>evidence</th><th>fix</th></tr>"]  # fmt: skip
    for gate, body in gates.items():
        if not isinstance(body, dict):
            continue
        for check in body.get("checks", []):
            if not check.get("judged", True):
                result = "<span>reported</span>"
            elif check.get("passed"):
                result = "<span class='pass'>pass</span>"
            else:
                result = "<span class='fail'>fail</span>"
            lines.append(
                f"<tr><td>{html.escape(gate)}</td><td>{html.escape(str(check.get('check')))}</td>"
                f"<td>{result}</td><td>{html.escape(str(check.get('evidence', '')))}</td>"
                f"<td>{html.escape(str(check.get('fix', '')))}</td></tr>"
            )
    lines.append("</table>")
    return "\n".join(lines)
