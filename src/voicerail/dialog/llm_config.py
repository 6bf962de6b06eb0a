"""The agent file of the LLM dialog mode (``dialog/llm_agent.py``): its
``llm`` section and the loader that validates it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voicerail.crm.gate import ContextPolicy
from voicerail.dialog.llm_tools import TOOLS
from voicerail.errors import ConfigError
from voicerail.yaml_files import read_yaml


class LLMSection(BaseModel):
    """The ``llm`` section of an agent file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    system_prompt: str
    tools: list[str] = Field(default_factory=list)
    max_tool_rounds: int = Field(default=3, ge=1, le=8)
    handoff_text: str = "I'll transfer you to our front desk now. Please hold."
    goodbye_text: str = "Thank you for calling. Goodbye!"
    silence_reprompt: str = "Are you still there?"
    silence_goodbye: str = "I haven't heard anything, so I'll end the call now. Goodbye!"
    resumed_text: str = "Sorry, I lost you for a moment."


class LLMAgentSpec(BaseModel):
    """An agent file in LLM mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    greeting: str
    llm: LLMSection
    # What callers beyond capacity get; validated by server.admission.load_overflow.
    overflow: dict[str, str] | None = None
    context: dict[str, Any] | None = None
    # The compliance section (PCI pause, redaction), checked by compliance/policy.py.
    compliance: dict[str, Any] | None = None


def load_llm_agent_spec(path: str | Path) -> LLMAgentSpec:
    """Read and validate an LLM-mode agent file.

    Raises:
        ConfigError: unreadable, not YAML, invalid, or naming an unknown tool.
    """
    source = str(path)
    raw = read_yaml(path)
    try:
        spec = LLMAgentSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ConfigError(first["msg"].lower(), source=source, field=field) from exc
    for tool in spec.llm.tools:
        if tool not in TOOLS:
            raise ConfigError(f"unknown tool {tool!r}", source=source, field="llm.tools")
    ContextPolicy.from_mapping(spec.context, source=source)
    return spec
