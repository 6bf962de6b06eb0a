"""The agent file: a small declarative schema, validated with pydantic.

An agent is a set of *flows* (tasks such as booking an appointment). A flow
has the intent that starts it, the slots it needs in order, an optional
explicit confirmation, and the action it runs when complete. *Answers* are
intents answered with a fixed text, from anywhere in the conversation
("what are your opening hours?"). Two intents are built in and must be
present: ``human`` (hand off) and ``robot`` (answered truthfully). Example::

    name: Riverside Family Clinic
    greeting: "Hi, you're talking to the clinic's AI assistant. ..."
    intents:
      book: ["I'd like to book an appointment", ...]
      human: ["can I talk to a person", ...]
      robot: ["am I talking to a robot", ...]
      hours: ["when are you open", ...]
    slots:
      day: {type: day, prompt: "What day works for you?"}
    flows:
      book:
        slots: [day, time, name]
        confirm: "So that's {day} at {time} for {name}. Shall I book it?"
        action: book_appointment
        done: "You're booked. Your confirmation number is {booking_id}."
    answers:
      robot: "Yes, I'm an AI assistant."
      hours: "We're open 8 AM to 6 PM, Monday to Friday."
    messages: {not_understood: ..., handoff: ..., ...}

Text fields are Python format strings over the filled slots (spoken forms)
and ``booking_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voicerail.errors import ConfigError

ACTIONS = ("book_appointment", "reschedule_appointment", "cancel_appointment")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotSpec(_Strict):
    """A value the agent collects: its type and the question that asks for it."""

    type: Literal["day", "time", "name"]
    prompt: str


class FlowSpec(_Strict):
    """A task: slots in the order they are asked, confirmation, action, closing text."""

    slots: list[str] = Field(default_factory=list)
    start: str | None = None
    confirm: str | None = None
    action: Literal["book_appointment", "reschedule_appointment", "cancel_appointment"] | None = (
        None
    )
    done: str
    not_found: str = "I couldn't find an appointment under {name}."


class Messages(_Strict):
    """The agent's fixed sentences."""

    not_understood: str = "Sorry, I didn't catch that."
    anything_else: str = "Is there anything else I can help you with?"
    how_can_i_help: str = "What can I help you with?"
    declined: str = "No problem, let's change it."
    handoff: str = "Let me transfer you to a member of our staff. Please hold."
    goodbye: str = "Thank you for calling. Goodbye!"
    silence_reprompt: str = "Are you still there?"
    silence_goodbye: str = "I haven't heard anything, so I'll end the call now. Goodbye!"


class AgentSpec(_Strict):
    """The whole agent file."""

    name: str
    greeting: str
    intents: dict[str, list[str]]
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    flows: dict[str, FlowSpec] = Field(default_factory=dict)
    answers: dict[str, str] = Field(default_factory=dict)
    messages: Messages = Field(default_factory=Messages)
    max_misunderstandings: int = Field(default=2, ge=1)
    intent_threshold: float = Field(default=0.45, gt=0, lt=1)
    global_threshold: float = Field(default=0.6, gt=0, lt=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> AgentSpec:
        for required in ("human", "robot"):
            if required not in self.intents:
                raise ValueError(f"intents: the built-in intent {required!r} is required")
        if "robot" not in self.answers:
            raise ValueError("answers: 'robot' must say truthfully that this is an AI")
        for name, flow in self.flows.items():
            if (flow.start or name) not in self.intents:
                raise ValueError(f"flows.{name}: no intent {flow.start or name!r}")
            for slot in flow.slots:
                if slot not in self.slots:
                    raise ValueError(f"flows.{name}.slots: unknown slot {slot!r}")
        for name in self.answers:
            if name not in self.intents:
                raise ValueError(f"answers.{name}: no intent {name!r}")
        return self


def load_agent_spec(path: str | Path) -> AgentSpec:
    """Read and validate an agent file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid; the message names
            the file and the first bad field.
    """
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read agent file: {exc.strerror}", source=source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from exc
    if not isinstance(raw, dict):
        raise ConfigError("an agent file must be a mapping", source=source)
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ConfigError(first["msg"].lower(), source=source, field=field) from exc
