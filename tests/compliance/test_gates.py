"""`voicerail gates`: the clinic agent passes with good simulation reports; an agent
broken in each of the five ways fails that gate, naming the file and field to fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicerail.cli import main
from voicerail.compliance.gates import GATES, GateInputs, check_all
from voicerail.compliance.policy import deployment_compliance, load_policy

EXAMPLES = Path(__file__).parents[2] / "examples"
CLINIC = yaml.safe_load((EXAMPLES / "clinic.yaml").read_text())
DEPLOYMENT = EXAMPLES / "voicerail.yaml"


def call(scenario: str, *, passed: bool = True, outcome: str = "completed",
         kinds: tuple[str, ...] = ("speech",), cleared: bool = False,
         latencies: tuple[float, ...] = (700.0, 900.0)) -> dict[str, Any]:  # fmt: skip
    return {
        "scenario": scenario, "passed": passed, "outcome": outcome, "refused": None,
        "latencies_ms": list(latencies), "clears_at": [1.0] if cleared else [],
        "turns": [{"kind": k} for k in kinds],
    }  # fmt: skip


def good_report() -> dict[str, Any]:
    calls = [call("book") for _ in range(3)] + [
        call("barge-in", cleared=True),
        call("silent-caller", kinds=("silence",), outcome="abandoned"),
        call("human", outcome="handoff"),
        call("keypad-zero", kinds=("dtmf",), outcome="handoff"),
    ]
    return {"calls": calls, "summary": {"contamination": {"findings": 0}}}


def inputs(agent: dict[str, Any], reports: list[dict[str, Any]] | None = None) -> GateInputs:
    return GateInputs(
        agent_path="clinic.yaml",
        agent=agent,
        policy=load_policy(agent.get("compliance")),
        deployment_path="voicerail.yaml",
        deployment=deployment_compliance(DEPLOYMENT),
        reports=[good_report()] if reports is None else reports,
    )


def failed(agent: dict[str, Any], reports=None) -> dict[str, list[tuple[str, str]]]:
    results = check_all(inputs(agent, reports))
    return {g: [(c.name, c.fix) for c in checks if not c.passed] for g, checks in results.items()}


def test_the_clinic_agent_passes_every_gate_with_good_reports():
    assert failed(CLINIC) == {gate: [] for gate in GATES}


def broken(change) -> dict[str, Any]:
    agent = copy.deepcopy(CLINIC)
    change(agent)
    return agent


def test_context_a_sensitive_crm_field_visible_fails():
    agent = broken(lambda a: a.update(context={"must": ["first_name", "card_number"]}))
    assert failed(agent)["context"] == [
        ("no_denied_field_reachable", "clinic.yaml: context.must / context.when")
    ]


def test_context_an_llm_tool_writing_around_the_outbox_fails():
    agent = {"name": "x", "greeting": "I'm an AI.", "llm": {"tools": ["cancel_appointment"]}}
    assert ("writes_through_outbox", "clinic.yaml: llm.tools") in failed(agent)["context"]


def test_conversation_a_scenario_that_passes_two_runs_in_three_fails_pass_k():
    report = good_report()
    report["calls"][0]["passed"] = False
    [(name, fix)] = failed(CLINIC, [report])["conversation"]
    assert name == "pass_k" and fix.startswith("clinic.yaml: compliance.gates.pass_k_bar")
    check = next(c for c in check_all(inputs(CLINIC, [report]))["conversation"] if c.name == name)
    assert "book (2/3 runs)" in check.evidence


def test_conversation_slow_turns_missing_scenarios_and_contamination_fail():
    report = good_report()
    report["calls"] = [c for c in report["calls"] if c["scenario"] != "silent-caller"]
    report["calls"][0]["latencies_ms"] = [5000.0] * 50
    report["summary"]["contamination"]["findings"] = 2
    names = [n for n, _ in failed(CLINIC, [report])["conversation"]]
    assert names == ["latency_p95", "silence_scenario", "no_contamination"]
    assert failed(CLINIC, [])["conversation"] == [
        ("simulation", "clinic.yaml: compliance.gates.suites (or --simulation REPORT.json)")
    ]


def test_handoff_no_path_to_a_human_fails():
    def no_path(agent):
        agent["handoff"] = {"intents": [], "text": "Hold on."}
        agent["keypad"] = {"handoff": None, "yes": "1", "no": "2"}

    result = failed(broken(no_path))["handoff"]
    assert result[0] == ("path_exists", "clinic.yaml: handoff.intents")


def test_handoff_a_keypad_path_never_exercised_fails():
    report = good_report()
    report["calls"] = [c for c in report["calls"] if c["scenario"] != "keypad-zero"]
    [(name, fix)] = failed(CLINIC, [report])["handoff"]
    assert name == "paths_exercised" and "a handoff scenario" in fix


def test_evaluation_an_intent_without_a_success_label_fails():
    agent = broken(lambda a: a["compliance"]["evaluation"]["success"].pop("hours"))
    assert failed(agent)["evaluation"] == [
        ("success_labels", "clinic.yaml: compliance.evaluation.success.hours")
    ]


def test_evaluation_no_prohibited_utterances_fails():
    agent = broken(lambda a: a["compliance"]["guard"].update(prohibited=[]))
    assert failed(agent)["evaluation"] == [
        ("prohibited_utterances", "clinic.yaml: compliance.guard.prohibited")
    ]


def test_compliance_a_card_step_without_a_pci_pause_fails():
    def pay_node(agent):
        agent["nodes"]["pay"] = {"prompt": "Please read me your card number.", "next": "more"}

    assert failed(broken(pay_node))["compliance"] == [
        ("pci_pause", "clinic.yaml: compliance.pci.nodes")
    ]
    fixed = broken(pay_node)
    fixed["compliance"]["pci"] = {"nodes": ["pay"]}
    assert failed(fixed)["compliance"] == []


def test_compliance_unset_consent_health_care_end_disclosure_and_audit_fail():
    def break_it(agent):
        del agent["compliance"]["consent"]
        agent["compliance"]["health_care"] = True

    gate = inputs(broken(break_it))
    gate.audit = (4, ["entry 3: edited: its hash does not match"])
    results = check_all(gate)["compliance"]
    assert [(c.name, c.fix) for c in results if not c.passed] == [
        ("disclosure_end", "clinic.yaml: compliance.disclosure.at_end"),
        ("consent_mode", "clinic.yaml: compliance.consent.mode"),
        ("audit_log", "the audit log: voicerail audit verify"),
    ]


def test_the_command_exits_0_on_the_clinic_and_1_with_the_fix_on_a_broken_agent(tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(good_report()))
    base = ["gates", "--config", str(DEPLOYMENT), "--simulation", str(report)]
    assert main([*base, "--agent", str(EXAMPLES / "clinic.yaml"), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert set(body) == {*GATES, "passed"} and body["passed"] is True

    agent = broken(lambda a: a["compliance"]["evaluation"]["success"].pop("hours"))
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    assert main([*base, "--agent", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL evaluation" in out and f"fix: {path}: compliance.evaluation.success.hours" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [("name: [", "not valid YAML"), ("name: x\n", "agent.yaml")],
)
def test_an_invalid_agent_file_exits_2_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    assert main(["gates", "--agent", str(path)]) == 2
    assert message in capsys.readouterr().err


def fake(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "target": {"fake_providers": True}}


def slow_report() -> dict[str, Any]:
    """Behaviour right, timing off: turns over the target and a gap in the agent's audio."""
    report = good_report()
    for c in report["calls"]:
        c["latencies_ms"] = [2500.0]
    failures = [{"check": "audio_gap", "message": "1 gaps"}, {"check": "latency", "message": "x"}]
    report["calls"][0].update(passed=False, failures=failures)
    return report


def test_with_fake_providers_timing_is_reported_not_judged():
    results = check_all(inputs(CLINIC, [fake(slow_report())]))
    by_name = {c.name: c for c in results["conversation"]}
    assert all(c.passed for c in results["conversation"])
    assert not by_name["latency_p95"].judged and "reported, not judged" in (
        by_name["latency_p95"].evidence
    )
    assert "over target" in by_name["latency_p95"].evidence
    assert "1 calls failed timing checks alone" in by_name["pass_k"].evidence


def test_a_handoff_call_late_only_still_exercises_its_path_with_fake_providers():
    report = good_report()
    keypad = report["calls"][-1]
    keypad.update(passed=False, failures=[{"check": "audio_gap", "message": "1 gaps"}])
    assert failed(CLINIC, [fake(report)])["handoff"] == []
    assert [n for n, _ in failed(CLINIC, [report])["handoff"]] == ["paths_exercised"]


def test_timing_is_judged_with_real_providers_or_when_asked():
    real = failed(CLINIC, [slow_report()])["conversation"]
    assert [name for name, _ in real] == ["pass_k", "latency_p95"]
    asked = inputs(CLINIC, [fake(slow_report())])
    asked.judge_timing = True
    names = [c.name for c in check_all(asked)["conversation"] if not c.passed]
    assert names == ["pass_k", "latency_p95"]


def test_a_behaviour_failure_still_fails_with_fake_providers():
    report = slow_report()
    report["calls"][0]["failures"].append({"check": "must_say", "message": "never said"})
    assert [n for n, _ in failed(CLINIC, [fake(report)])["conversation"]] == ["pass_k"]


@pytest.mark.slow
def test_gates_end_to_end_on_the_clinic_in_ci_mode(tmp_path, capsys):
    """``voicerail gates`` runs the clinic's three suites on fake providers: exit 0, and
    ``--report`` keeps each suite's HTML report with the gates section."""
    command = ["gates", "--agent", str(EXAMPLES / "clinic.yaml"), "--config", str(DEPLOYMENT),
               "--json", "--report", str(tmp_path / "out")]  # fmt: skip
    assert main(command) == 0, capsys.readouterr().out
    body = json.loads(capsys.readouterr().out)
    assert body["passed"] is True
    latency = next(c for c in body["conversation"]["checks"] if c["check"] == "latency_p95")
    assert latency["judged"] is False
    page = (tmp_path / "out" / "clinic-happy-paths" / "report.html").read_text()
    assert "<h2>Go-live gates</h2>" in page and "<td>pass_k</td>" in page
    assert json.loads((tmp_path / "out" / "gates.json").read_text())["passed"] is True


@pytest.mark.slow
def test_gates_end_to_end_fails_an_agent_that_never_gives_the_confirmation_number(tmp_path, capsys):
    """A booking agent whose confirmation drops the number fails the happy-path suite."""
    text = (EXAMPLES / "clinic.yaml").read_text()
    text = text.replace("Your confirmation number is {booking_id}.", "See you then.")
    agent = yaml.safe_load(text)
    agent["compliance"]["gates"]["suites"] = [str(EXAMPLES / "scenarios" / "clinic_happy.yaml")]
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    assert main(["gates", "--agent", str(path), "--config", str(DEPLOYMENT)]) == 1
    out = capsys.readouterr().out
    assert "FAIL conversation" in out and "failing: book (0/" in out
    assert f"fix: {path}: compliance.gates.pass_k_bar" in out
