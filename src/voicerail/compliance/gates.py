"""The five go-live gates (issue 14): context, conversation, handoff, evaluation, compliance.

Each gate is a list of :class:`Check`; a check passes or fails with its evidence,
and a failed one names the file and field to fix. Everything here is pure: the
agent file, the deployment file, the simulation reports and the audit log's
verification are read by ``gates_cli.py`` and handed in as :class:`GateInputs`.

What each gate asks (the issue's list, and how it is decided here):

- context: the agent's CRM fields are classified (the ``context`` section parses;
  with none, every field is denied); no field of a sensitive kind
  (:data:`SENSITIVE_FIELDS`) is visible; writes go through the outbox (flow
  actions always do; an LLM agent's write tools must be ones that do).
- conversation: there is a simulation; pass^k (a scenario passes only if every
  run of it passed, as in τ-bench) over the scenarios reaches the bar; turn
  latency p95 at the ear is under the agent's target (``compliance.gates.
  latency_p95_ms``), judged only when the reports come from the real providers:
  with the simulator's fake providers (``target.fake_providers`` in the report)
  the figure measures the fakes' simulated delays and the machine's load, not
  the agent, so it is reported against the target and not judged (a CI runner
  under load must not fail a correct agent). For the same reason a call whose
  only failed checks are timing ones (:data:`TIMING_CHECKS`: a turn over the
  scenario's ``max_turn_latency_ms``, gaps in the agent's audio) counts as
  passed for pass^k then, and the evidence says how many did; a barge-in (the agent's audio was
  cleared) and a silence scenario were run and passed; no contamination.
- handoff: a path to a human exists (flow: handoff intents or a keypad key; LLM:
  ``transfer_to_human``); each kind of path (spoken, keypad) was exercised by a
  passing simulated call that ended in a handoff; the handoff is announced;
  fallbacks for a transfer nobody answers are configured and valid.
- evaluation: every intent (flow) or tool (LLM) has a success label; sampling
  rules are set; the prohibited-utterance list is not empty.
- compliance: the AI is disclosed at the start (and at the end for health
  care); the consent mode is set explicitly; every step that asks for a card
  is a PCI pause; retention is set for every data class; the audit log verifies.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from voicerail.compliance.guard import discloses_ai
from voicerail.compliance.policy import CompliancePolicy, DeploymentCompliance
from voicerail.compliance.stores import DATA_CLASSES

GATES = ("context", "conversation", "handoff", "evaluation", "compliance")
#: CRM fields no agent may see, by name pattern.
SENSITIVE_FIELDS = re.compile(
    r"card|pan\b|cvv|cvc|ssn|social_security|password|passcode|pin\b|diagnos|"
    r"medical|health_record|bank_account|routing_number|iban",
    re.IGNORECASE,
)
#: LLM tools whose writes go through the CRM outbox (``dialog/llm_agent.py`` rule 5).
OUTBOX_TOOLS = frozenset({"book_appointment"})
#: LLM tools that write, whatever the route.
WRITE_TOOLS = frozenset({"book_appointment", "cancel_appointment"})
#: Simulator checks about timing, not behaviour (``sim/checks.py``).
TIMING_CHECKS = frozenset({"latency", "audio_gap"})
_CARD_WORDS = re.compile(r"\b(?:card number|credit card|debit card|payment|pay)\b", re.I)


@dataclass(frozen=True)
class Check:
    """One check of one gate.

    Attributes:
        name: what is checked (``pass_k``).
        passed: whether it holds.
        evidence: what was found, with the numbers.
        fix: ``FILE: field`` to change when it fails ("" when it passed).
        judged: False when the figure is only reported (it passes whatever it is).
    """

    name: str
    passed: bool
    evidence: str
    fix: str = ""
    judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "evidence": self.evidence,
                "fix": self.fix, "judged": self.judged}  # fmt: skip


@dataclass
class GateInputs:
    """Everything the gates read.

    Attributes:
        agent_path: the agent file, as named on the command line.
        agent: the agent file's mapping.
        policy: its ``compliance`` section.
        deployment_path: the deployment file ("" when none).
        deployment: its ``compliance`` section.
        reports: simulation reports (``report.json`` contents).
        audit: ``(entries, problems)`` of the audit log; None when there is none.
        fallbacks_error: why the deployment's handoff fallbacks do not parse.
        judge_timing: judge the latency budget and the scenarios' timing checks
            (True), only report them (False), or judge them unless a report comes
            from fake providers (None).
    """

    agent_path: str
    agent: dict[str, Any]
    policy: CompliancePolicy
    deployment_path: str
    deployment: DeploymentCompliance
    reports: list[dict[str, Any]] = field(default_factory=list)
    audit: tuple[int, list[str]] | None = None
    fallbacks_error: str | None = None
    judge_timing: bool | None = None

    @property
    def is_llm(self) -> bool:
        return "llm" in self.agent

    @property
    def tools(self) -> list[str]:
        return list((self.agent.get("llm") or {}).get("tools") or [])

    def at(self, where: str) -> str:
        return f"{self.agent_path}: {where}"

    def deployed(self, where: str) -> str:
        return f"{self.deployment_path or 'the deployment file (--config)'}: {where}"


def check_all(inputs: GateInputs) -> dict[str, list[Check]]:
    """Every gate's checks, in :data:`GATES` order."""
    return {
        "context": context_gate(inputs),
        "conversation": conversation_gate(inputs),
        "handoff": handoff_gate(inputs),
        "evaluation": evaluation_gate(inputs),
        "compliance": compliance_gate(inputs),
    }


def context_gate(g: GateInputs) -> list[Check]:
    section = g.agent.get("context")
    checks: list[Check] = []
    if section is None:
        checks.append(Check("classified", True, "no context section: every CRM field is denied"))
        visible: list[str] = []
    else:
        from voicerail.crm.gate import ContextPolicy
        from voicerail.errors import ConfigError

        try:
            policy = ContextPolicy.from_mapping(section, source=g.agent_path)
        except ConfigError as exc:
            return [Check("classified", False, str(exc), g.at(exc.field or "context"))]
        visible = [*policy.must, *policy.when]
        checks.append(
            Check("classified", True, f"visible: {', '.join(visible) or 'none'}; others denied")
        )
    sensitive = [f for f in visible if SENSITIVE_FIELDS.search(f)]
    checks.append(
        Check("no_denied_field_reachable", not sensitive,
              f"sensitive fields visible: {', '.join(sensitive)}" if sensitive
              else "no sensitive field is visible",
              g.at("context.must / context.when") if sensitive else "")
    )  # fmt: skip
    if g.is_llm:
        direct = sorted(t for t in g.tools if t in WRITE_TOOLS - OUTBOX_TOOLS)
        checks.append(
            Check("writes_through_outbox", not direct,
                  f"tools that write the store directly: {', '.join(direct)}" if direct
                  else "every write tool goes through the outbox",
                  g.at("llm.tools") if direct else "")
        )  # fmt: skip
    else:
        checks.append(
            Check("writes_through_outbox", True, "flow actions write through the CRM outbox")
        )
    return checks


def _judges_timing(g: GateInputs) -> bool:
    if g.judge_timing is not None:
        return g.judge_timing
    return not any((r.get("target") or {}).get("fake_providers") for r in g.reports)


def _passed(call: dict[str, Any], judge_timing: bool) -> bool:
    """The call passed, or (timing not judged) failed timing checks alone."""
    if call.get("passed"):
        return True
    failures = call.get("failures") or []
    return (
        not judge_timing
        and bool(failures)
        and all(f.get("check") in TIMING_CHECKS for f in failures)
    )


def _scenario_runs(reports: list[dict[str, Any]], judge_timing: bool) -> dict[str, list[bool]]:
    runs: dict[str, list[bool]] = defaultdict(list)
    for report in reports:
        for call in report.get("calls", []):
            if call.get("refused") is None:
                runs[str(call.get("scenario"))].append(_passed(call, judge_timing))
    return runs


def conversation_gate(g: GateInputs) -> list[Check]:
    if not g.reports:
        return [Check("simulation", False, "no simulation report",
                      g.at("compliance.gates.suites (or --simulation REPORT.json)"))]  # fmt: skip

    timing = _judges_timing(g)
    calls = [c for r in g.reports for c in r.get("calls", [])]
    runs = _scenario_runs(g.reports, timing)
    late = sum(1 for c in calls if not c.get("passed") and _passed(c, timing))
    passing = sorted(s for s, r in runs.items() if r and all(r))
    share = len(passing) / len(runs) if runs else 0.0
    failing = [f"{s} ({sum(r)}/{len(r)} runs)" for s, r in sorted(runs.items()) if not all(r)]
    bar = g.policy.gates.pass_k_bar
    checks = [
        Check("simulation", True, f"{len(g.reports)} reports, {len(runs)} scenarios"),
        Check("pass_k", bool(runs) and share >= bar,
              f"pass^k {share:.2f} (bar {bar:.2f})"
              + (f"; failing: {', '.join(failing)}" if failing else "")
              + (f"; {late} calls failed timing checks alone (not judged)" if late else ""),
              "" if share >= bar else g.at("compliance.gates.pass_k_bar (or fix the scenarios)")),
    ]  # fmt: skip
    latencies = [
        ms for r in g.reports for c in r.get("calls", []) for ms in c.get("latencies_ms", [])
    ]
    checks.append(_latency_check(g, latencies, timing))
    for name, test in (
        ("barge_in_scenario", lambda c: bool(c.get("clears_at"))),
        ("silence_scenario", lambda c: any(t.get("kind") == "silence" for t in c.get("turns", []))),
    ):
        ran = [c for c in calls if test(c)]
        passed = sum(1 for c in ran if _passed(c, timing))
        ok = bool(ran) and passed == len(ran)
        checks.append(
            Check(name, ok, f"{passed}/{len(ran)} such calls passed",
                  "" if ok else g.at("compliance.gates.suites: add a passing one"))
        )  # fmt: skip
    findings = sum(
        int((r.get("summary", {}).get("contamination") or {}).get("findings", 0)) for r in g.reports
    )
    fix = "" if findings == 0 else "the simulation report: contamination"
    checks.append(Check("no_contamination", findings == 0, f"{findings} findings", fix))
    return checks


def _latency_check(g: GateInputs, latencies: list[float], judged: bool) -> Check:
    from voicerail.sim.stats import percentile

    budget = g.policy.gates.latency_p95_ms
    p95 = percentile(latencies, 95) if latencies else None
    fake = sum(1 for r in g.reports if (r.get("target") or {}).get("fake_providers"))
    if p95 is None:
        evidence = "no turn latencies in the reports"
    else:
        evidence = f"p95 {p95:.0f} ms at the ear (target {budget:.0f} ms, {len(latencies)} turns)"
    if not judged:
        why = f"{fake} of {len(g.reports)} reports from fake providers" if fake else "asked"
        within = "within" if p95 is not None and p95 <= budget else "over"
        return Check("latency_p95", True, f"{evidence}: {within} target; reported, not judged "
                     f"({why}; judge with --providers embedded)", judged=False)  # fmt: skip
    ok = p95 is not None and p95 <= budget
    return Check("latency_p95", ok, evidence, "" if ok else g.at("compliance.gates.latency_p95_ms"))


def handoff_gate(g: GateInputs) -> list[Check]:
    if g.is_llm:
        kinds = ["spoken"] if "transfer_to_human" in g.tools else []
        where, text = "llm.tools", (g.agent.get("llm") or {}).get("handoff_text", "default")
    else:
        handoff = g.agent.get("handoff") or {}
        keypad = g.agent.get("keypad") or {}
        kinds = (["spoken"] if handoff.get("intents") else []) + (
            ["keypad"] if keypad.get("handoff", "0") else []
        )
        where, text = "handoff.intents", handoff.get("text")
    checks = [Check("path_exists", bool(kinds), f"paths: {', '.join(kinds) or 'none'}",
                    "" if kinds else g.at(where))]  # fmt: skip
    timing = _judges_timing(g)
    handed = [
        c for r in g.reports for c in r.get("calls", [])
        if c.get("outcome") == "handoff" and _passed(c, timing)
    ]  # fmt: skip
    exercised = {
        "keypad" if any(t.get("kind") == "dtmf" for t in c.get("turns", [])) else "spoken"
        for c in handed
    }
    missing = [k for k in kinds if k not in exercised]
    checks.append(
        Check("paths_exercised", bool(kinds) and not missing,
              f"{len(handed)} passing handoff calls; not exercised: {', '.join(missing) or 'none'}",
              "" if kinds and not missing else g.at("compliance.gates.suites: a handoff scenario"))
    )  # fmt: skip
    checks.append(Check("announced", bool(text), f"handoff text: {text!r}",
                        "" if text else g.at("handoff.text")))  # fmt: skip
    fallbacks = g.deployment.handoff_fallbacks
    ok = bool(fallbacks) and g.fallbacks_error is None
    checks.append(
        Check("fallback", ok, g.fallbacks_error or f"fallbacks: {fallbacks or 'none'}",
              "" if ok else g.deployed("compliance.handoff_fallbacks"))
    )  # fmt: skip
    return checks


def evaluation_gate(g: GateInputs) -> list[Check]:
    if g.is_llm:
        goals = [t for t in g.tools if t != "end_call"]
    else:
        goals = list(g.agent.get("intents") or {})
    labels = g.policy.evaluation.success
    missing = [i for i in goals if i not in labels]
    prohibited = g.policy.guard.prohibited
    return [
        Check("success_labels", not missing,
              f"{len(goals) - len(missing)}/{len(goals)} labelled"
              + (f"; missing: {', '.join(missing)}" if missing else ""),
              g.at(f"compliance.evaluation.success.{missing[0]}") if missing else ""),
        Check("sampling", g.deployment.sampling is not None,
              "sampling rules set" if g.deployment.sampling else "no sampling rules",
              "" if g.deployment.sampling else g.deployed("compliance.sampling")),
        Check("prohibited_utterances", bool(prohibited), f"{len(prohibited)} prohibited phrases",
              "" if prohibited else g.at("compliance.guard.prohibited")),
    ]  # fmt: skip


def _greeting_discloses(g: GateInputs) -> bool:
    greeting = str(g.agent.get("greeting", ""))
    disclosure = str(g.agent.get("disclosure", ""))
    return discloses_ai(greeting.replace("{disclosure}", disclosure))


def compliance_gate(g: GateInputs) -> list[Check]:
    policy = g.policy
    start = _greeting_discloses(g) or policy.disclosure.at_start
    checks = [
        Check("disclosure_start", start,
              "the greeting discloses the AI" if _greeting_discloses(g)
              else "the compliance wrapper adds the disclosure" if start else "no disclosure",
              "" if start else g.at("compliance.disclosure.at_start (or the greeting)")),
    ]  # fmt: skip
    end_ok = not policy.health_care or bool(policy.disclosure.at_end)
    checks.append(
        Check("disclosure_end", end_ok,
              f"at end: {policy.disclosure.at_end!r}" if policy.disclosure.at_end
              else "not required (not health care)" if not policy.health_care
              else "health care agent without an end-of-call disclosure (AB 3030)",
              "" if end_ok else g.at("compliance.disclosure.at_end"))
    )  # fmt: skip
    raw_consent = ((g.agent.get("compliance") or {}).get("consent") or {}).get("mode")
    checks.append(
        Check("consent_mode", raw_consent is not None, f"consent mode: {raw_consent or 'not set'}",
              "" if raw_consent else g.at("compliance.consent.mode"))
    )  # fmt: skip
    checks.append(_pci_check(g))
    days = g.deployment.retention.days()
    unset = [c for c in DATA_CLASSES if c not in days]
    checks.append(
        Check("retention", not unset,
              "; ".join([", ".join(f"{c} {days[c]:g} days" for c in DATA_CLASSES if c in days)]
                        + ([f"not set: {', '.join(unset)}"] if unset else [])).strip("; "),
              g.deployed(f"compliance.retention.{unset[0]}") if unset else "")
    )  # fmt: skip
    if g.audit is None:
        checks.append(Check("audit_log", True, "no audit log yet (--data-dir)"))
    else:
        entries, problems = g.audit
        checks.append(
            Check("audit_log", not problems,
                  f"{entries} entries verified" if not problems else "; ".join(problems[:3]),
                  "" if not problems else "the audit log: voicerail audit verify")
        )  # fmt: skip
    return checks


def _pci_check(g: GateInputs) -> Check:
    if g.is_llm:
        prompt = str((g.agent.get("llm") or {}).get("system_prompt", ""))
        asks = bool(_CARD_WORDS.search(prompt))
        ok = not asks or "collect_payment" in g.tools
        return Check("pci_pause", ok,
                     "takes cards through collect_payment" if asks and ok
                     else "does not take cards" if ok
                     else "the prompt takes payments without the collect_payment tool",
                     "" if ok else g.at("llm.tools: collect_payment"))  # fmt: skip
    nodes = g.agent.get("nodes") or {}
    asking = sorted(
        name for name, node in nodes.items()
        if any(_CARD_WORDS.search(str(node.get(k) or "")) for k in ("say", "prompt", "confirm"))
    )  # fmt: skip
    unpaused = [n for n in asking if n not in g.policy.pci.nodes]
    return Check("pci_pause", not unpaused,
                 f"card steps: {', '.join(asking) or 'none'}"
                 + (f"; without a PCI pause: {', '.join(unpaused)}" if unpaused else ""),
                 g.at("compliance.pci.nodes") if unpaused else "")  # fmt: skip
