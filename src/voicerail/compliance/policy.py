"""The agent file's ``compliance`` section: what each compliance rule does for one agent.

An agent file (flow or LLM mode) may carry::

    compliance:
      pci:                       # PCI pause (compliance/pci.py)
        nodes: [payment]         # flow nodes that ask for a card; LLM agents use
                                 # the collect_payment tool
        prompt: Please key in your card number, then press pound.
        invalid: That card number didn't check out. Please key it again, then press pound.
        max_attempts: 2
      redaction:                 # compliance/redact.py
        llm: true                # redact what the LLM provider is sent, too
      disclosure:                # compliance/guard.py
        at_end: To reach our staff, call 555 0100 between 8 and 6.   # AB 3030
      guard:
        prohibited: ["\\bdiagnos", "guarantee"]
      consent:
        mode: opt_in             # none | notice | opt_in

Every field has a default, so ``compliance: {}`` (or no section) gives the PCI
pause on LLM payment tools and transcript redaction for logs and events.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from voicerail.errors import ConfigError
from voicerail.yaml_files import read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PciPolicy(_Strict):
    """The PCI pause (``compliance/pci.py``).

    Attributes:
        nodes: flow nodes whose reply asks for a card: the pause starts once the
            reply is spoken.
        prompt: said when a keyed entry is empty or the caller speaks during the pause.
        invalid: said when the keyed number fails the Luhn check (the pause goes on).
        max_attempts: keyed entries allowed before the pause ends unpaid.
        resumed: said before ``prompt`` when a call resumes in another stream
            during the pause (the keys pressed before the break are gone).
        capture: ``keypad`` (the keys come through the media stream to the
            tokenizer) or ``twilio_pay`` (the call leaves the stream for Twilio's
            ``<Pay>``, which tokenizes at the account's Pay Connector, and comes
            back to a fresh stream: ``compliance/pay_http.py``).
        pay_connector: the Pay Connector's unique name (``twilio_pay`` only).
    """

    nodes: list[str] = Field(default_factory=list)
    prompt: str = "Please key in your card number on your phone's keypad, then press pound."
    invalid: str = "That card number didn't check out. Please key it again, then press pound."
    max_attempts: int = Field(default=2, ge=1)
    resumed: str = "Sorry, I lost you for a moment, and the card number with you."
    capture: Literal["keypad", "twilio_pay"] = "keypad"
    pay_connector: str = "Default"


class RedactionPolicy(_Strict):
    """What is redacted where (``compliance/redact.py``).

    Attributes:
        transcripts: redact personal data in the recorded transcript (events, state).
        llm: also redact caller text before the dialog sees it (then the LLM
            provider never receives it; a flow agent loses names it could slot).
    """

    transcripts: bool = True
    llm: bool = False


class DisclosurePolicy(_Strict):
    """AI disclosure (``compliance/guard.py`` rules 1-2).

    Attributes:
        text: the disclosure, said at the start when the greeting has none, and
            when the caller asks and the reply has none.
        at_start: disclose in the first reply.
        when_asked: disclose whenever the caller asks whether this is a person.
        at_end: said before the agent hangs up (AB 3030: how to reach a human);
            None: nothing.
    """

    text: str = "You're talking to an AI assistant."
    at_start: bool = True
    when_asked: bool = True
    at_end: str | None = None


class GuardPolicy(_Strict):
    """The output guard (``compliance/guard.py`` rules 3-4).

    Attributes:
        prohibited: regular expressions (case-insensitive) no reply may match.
        fallback: said instead of a reply that matched one.
    """

    prohibited: list[str] = Field(default_factory=list)
    fallback: str = "Sorry, I can't help with that. Is there anything else I can do?"

    @field_validator("prohibited")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r}: {exc}") from exc
        return value

    def patterns(self) -> list[re.Pattern[str]]:
        """The prohibited phrases, compiled."""
        return [re.compile(p, re.IGNORECASE) for p in self.prohibited]


class ConsentPolicy(_Strict):
    """Recording consent.

    Attributes:
        mode: ``none`` (no recording notice), ``notice`` (the greeting says the call
            may be recorded) or ``opt_in`` (the caller is asked, and only a yes
            keeps transcripts).
        notice: added to the greeting in ``notice`` mode when it does not mention
            recording.
        prompt: added to the greeting in ``opt_in`` mode.
        accepted: said after a yes, before the greeting's question again.
        declined: said after a no.
    """

    mode: Literal["none", "notice", "opt_in"] = "notice"
    notice: str = "This call may be recorded."
    prompt: str = "May I record this call? Please say yes or no."
    accepted: str = "Thank you."
    declined: str = "Okay, this call won't be recorded."


class EvaluationPolicy(_Strict):
    """How calls are judged (``compliance/evaluation.py``).

    Attributes:
        success: intent (flow agents) or tool (LLM agents) → the call outcome that
            completes it (``completed``, ``handoff``, ...).
    """

    success: dict[str, str] = Field(default_factory=dict)


class GatesPolicy(_Strict):
    """What ``voicerail gates`` asks of this agent (``compliance/gates.py``).

    Attributes:
        suites: simulation suites (paths relative to the agent file) run when no
            ``--simulation`` report is given.
        pass_k_bar: share of scenarios that must pass every one of their runs.
        latency_p95_ms: the turn latency budget at the caller's ear, p95.
    """

    suites: list[str] = Field(default_factory=list)
    pass_k_bar: float = Field(default=1.0, ge=0, le=1)
    latency_p95_ms: float = Field(default=1500.0, gt=0)


class CompliancePolicy(_Strict):
    """The whole ``compliance`` section.

    ``health_care``: the agent talks to patients (California AB 3030): the gates
    then require an end-of-call disclosure (``disclosure.at_end``).
    """

    health_care: bool = False
    pci: PciPolicy = Field(default_factory=PciPolicy)
    redaction: RedactionPolicy = Field(default_factory=RedactionPolicy)
    disclosure: DisclosurePolicy = Field(default_factory=DisclosurePolicy)
    guard: GuardPolicy = Field(default_factory=GuardPolicy)
    consent: ConsentPolicy = Field(default_factory=ConsentPolicy)
    evaluation: EvaluationPolicy = Field(default_factory=EvaluationPolicy)
    gates: GatesPolicy = Field(default_factory=GatesPolicy)


def load_policy(raw: dict[str, Any] | None, *, source: str | None = None) -> CompliancePolicy:
    """Validate an agent file's ``compliance`` section (None: every default).

    Raises:
        ConfigError: a field is unknown or invalid; ``field`` names it
            (``compliance.pci.max_attempts``).
    """
    try:
        return CompliancePolicy.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("compliance", *first["loc"]))
        raise ConfigError(first["msg"].lower(), source=source or "<config>", field=where) from exc


def policy_of_agent_file(path: str | Path) -> CompliancePolicy:
    """The ``compliance`` section of the agent file at ``path`` (every default when absent).

    Raises:
        ConfigError: the file cannot be read or parsed, or the section is invalid.
    """
    source = str(path)
    raw = read_yaml(path)
    section = raw.get("compliance") if isinstance(raw, dict) else None
    if section is not None and not isinstance(section, dict):
        raise ConfigError("must be a mapping", source=source, field="compliance")
    return load_policy(section, source=source)


class RetentionPolicy(_Strict):
    """Days each data class is kept (``compliance/stores.py`` rule 3); None: not set.

    ``audio`` must be set too, although voicerail stores none, so that a deployment
    that adds recordings states how long they live.
    """

    audio: float | None = Field(default=None, ge=0)
    transcripts: float | None = Field(default=None, ge=0)
    events: float | None = Field(default=None, ge=0)
    crm_writes: float | None = Field(default=None, ge=0)

    def days(self) -> dict[str, float]:
        """The classes that are set → days."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SamplingPolicy(_Strict):
    """Which calls go to human QA (``compliance/evaluation.py``).

    Attributes:
        failed: every failed call.
        handoffs: every handed-off call.
        guard_hits: every call with an output-guard hit.
        percent_of_rest: this share of the other calls, chosen by call id hash.
    """

    failed: bool = True
    handoffs: bool = True
    guard_hits: bool = True
    percent_of_rest: float = Field(default=5.0, ge=0, le=100)


class DeploymentCompliance(_Strict):
    """The deployment file's ``compliance`` section (``voicerail.yaml``).

    Attributes:
        retention: days per data class.
        sampling: human QA sampling; None: not set.
        retention_every_s: how often ``voicerail serve`` runs the retention job.
        handoff_fallbacks: what a failed transfer does, as ``voicerail serve
            --handoff-fallbacks`` takes it (``busy=callback,no_answer=voicemail``);
            the flag, when given, wins.
    """

    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    sampling: SamplingPolicy | None = None
    retention_every_s: float = Field(default=3600.0, gt=0)
    handoff_fallbacks: str | None = None


def deployment_compliance(path: str | Path | None) -> DeploymentCompliance:
    """The ``compliance`` section of the deployment file at ``path`` (defaults: None).

    Raises:
        ConfigError: the file cannot be read or parsed, or the section is invalid.
    """
    if path is None:
        return DeploymentCompliance()
    source = str(path)
    raw = read_yaml(path, "deployment file")
    section = raw.get("compliance") if isinstance(raw, dict) else None
    try:
        return DeploymentCompliance.model_validate(section or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("compliance", *first["loc"]))
        raise ConfigError(first["msg"].lower(), source=source, field=where) from exc
