"""The agent file of the flow engine: a small declarative schema, validated with pydantic.

An agent is a graph of *nodes*. A node may say something on entry, ask a
question and wait (``prompt``), collect typed *slots* (asking only for the
missing ones), confirm explicitly, run an *action*, and move on (``next``) or
wait for a transition (an intent, or the caller's ``yes``/``no``). *Routes*
start a node from anywhere ("I want to cancel"); *answers* reply to an intent
from anywhere and then ask the pending question again ("are you open on
Saturday?"). Example (the full one is ``examples/clinic.yaml``)::

    name: Riverside Family Clinic
    disclosure: You're talking to the clinic's AI assistant; this call may be recorded.
    greeting: "Hello, thanks for calling. {disclosure} How can I help?"
    intents:
      book: ["I'd like to book an appointment", ...]
      human: {examples: ["can I talk to a person", ...], keywords: [operator]}
      robot: ["am I talking to a robot", ...]
    slots:
      day: {type: day, prompt: "What day would you like to come in?"}
      name: {type: name, prompt: "May I have your name?", keep: true}
    routes: {book: book}
    answers: {robot: "Yes, I'm an AI assistant."}
    nodes:
      start: {prompt: "How can I help you today?"}
      book:
        collect: [day, time, name]
        confirm: "So that's {day} at {time} for {name}. Shall I book it?"
        action: book_appointment
        done: "You're all set. Your confirmation number is {booking_id}."
        next: more
      more: {prompt: "Anything else?", transitions: {"yes": start, "no": bye}}
      bye: {say: "Goodbye!", end_call: true}
    handoff: {intents: [human], text: "Let me transfer you."}

Confirmation policy: a node with ``confirm`` asks explicitly before its action
runs (for writes that matter: a booking, a cancellation); a node without acts
at once, and its ``done`` text should restate the values (implicit confirmation).

Rules kept here (checked when the file loads; the engine relies on them):

1. The greeting contains ``{disclosure}``: no agent can forget to say that it is
   an AI and that the call may be recorded.
2. An intent named ``robot`` exists ("am I talking to a machine?"); its answer
   defaults to the disclosure, so the question is always answered truthfully.
3. Every name a field refers to exists: nodes, slots, intents, actions; text
   fields use only known ``{placeholders}``: slot names, ``booking_id``,
   ``booking_day``, ``booking_time``, ``disclosure`` and ``agent``.
4. An action's node collects the slot types the action needs (see ``ACTIONS``),
   and a node that does nothing to move on (no prompt, slots, next or end) is
   refused, as is a cycle of ``next`` links that never waits for the caller.

Every error becomes a :class:`~voicerail.errors.ConfigError` naming the file and
the dotted path of the first bad field.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voicerail.errors import ConfigError
from voicerail.yaml_files import read_yaml

SlotType = Literal["day", "time", "name"]
ActionName = Literal["book_appointment", "reschedule_appointment", "cancel_appointment"]

# The slot types each action reads from its node (required, optional).
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "book_appointment": (frozenset({"day", "time", "name"}), frozenset()),
    "reschedule_appointment": (frozenset({"name", "day", "time"}), frozenset()),
    "cancel_appointment": (frozenset({"name"}), frozenset({"day"})),
}
# Actions that first find an existing booking (and can fail to), and the slot
# types that identify it: the lookup runs as soon as those are filled.
LOOKUP_ACTIONS: dict[str, frozenset[str]] = {
    "reschedule_appointment": frozenset({"name"}),
    "cancel_appointment": frozenset({"name"}),
}
YES, NO = "yes", "no"
BUILT_IN_FIELDS = frozenset({"booking_id", "booking_day", "booking_time", "disclosure", "agent"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _yaml_booleans(value: object) -> object:
    """YAML 1.1 reads an unquoted ``yes:``/``no:`` key as a boolean: take it back."""
    if isinstance(value, dict):
        return {
            ({True: YES, False: NO}.get(k, k) if isinstance(k, bool) else k): v
            for k, v in value.items()
        }
    return value


class IntentSpec(_Strict):
    """An intent: example phrases for the embeddings, keywords for very short replies."""

    examples: list[str] = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)


class SlotSpec(_Strict):
    """A typed value the agent collects, and the question that asks for it.

    ``keep`` slots survive a new task and a "no" at a confirmation (the caller's name).
    """

    type: SlotType
    prompt: str
    keep: bool = False


class NodeSpec(_Strict):
    """One step of the conversation (see the module docstring).

    Attributes:
        say: said when the node is entered.
        prompt: the question the node waits on; asked again after a misunderstanding.
        collect: slots asked in this order, only those still missing.
        ask: this node's own question for some of its slots (instead of the slot's).
        optional: slots taken when the caller says them, never asked.
        confirm: explicit confirmation before the action ("yes" runs it).
        declined: said after a "no" to ``confirm`` when nothing is left to ask
            again; the dialog then goes to ``next`` without running the action.
        action: what runs once the slots are collected (and confirmed).
        done: said after the action succeeded.
        not_found: said when the action found no booking to change.
        next: the node entered after ``say``/``done`` without waiting.
        transitions: intent name, ``yes`` or ``no`` → node, while this node waits.
        end_call: hang up after this node's ``say``.
    """

    say: str | None = None
    prompt: str | None = None
    collect: list[str] = Field(default_factory=list)
    ask: dict[str, str] = Field(default_factory=dict)
    optional: list[str] = Field(default_factory=list)
    confirm: str | None = None
    declined: str | None = None
    action: ActionName | None = None
    done: str | None = None
    not_found: str = "I couldn't find that appointment."
    next: str | None = None
    transitions: dict[str, str] = Field(default_factory=dict)
    end_call: bool = False

    _transitions_keys = field_validator("transitions", mode="before")(_yaml_booleans)

    @model_validator(mode="after")
    def _moves_on(self) -> NodeSpec:
        if not (self.prompt or self.collect or self.next or self.end_call or self.action):
            raise ValueError("a node must prompt, collect, go next or end the call")
        if (self.confirm or self.done) and not self.action:
            raise ValueError("confirm and done need an action")
        if self.action and not self.done:
            raise ValueError(f"action {self.action!r} needs a 'done' text")
        return self


class HandoffSpec(_Strict):
    """When and how the agent hands the call to a human."""

    intents: list[str] = Field(default_factory=lambda: ["human"])
    text: str = "Let me transfer you to a member of our staff. Please hold."


class KeypadSpec(_Strict):
    """Keys with a meaning anywhere: a human, and yes/no where the dialog waits for one."""

    handoff: str | None = "0"
    yes: str | None = "1"
    no: str | None = "2"

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        return _yaml_booleans(value)


class Messages(_Strict):
    """The agent's fixed sentences."""

    not_understood: str = "Sorry, I didn't catch that."
    declined: str = "No problem, let's change it."
    silence_reprompt: str = "Are you still there?"
    silence_goodbye: str = "I haven't heard anything, so I'll end the call now. Goodbye!"
    #: Said first when a call resumes on another worker after its stream broke.
    resumed: str = "Sorry, I lost you for a moment."


class Thresholds(_Strict):
    """Intent score thresholds (cosine similarity of MiniLM embeddings).

    ``intent``: what a route, transition or answer needs when nothing else fits
    the turn. ``preempt``: what a handoff or answer needs to win over slot values
    and yes/no found in the same turn.
    """

    intent: float = Field(default=0.45, gt=0, lt=1)
    preempt: float = Field(default=0.6, gt=0, lt=1)


class AgentSpec(_Strict):
    """The whole agent file (rules in the module docstring)."""

    name: str
    disclosure: str
    greeting: str
    intents: dict[str, IntentSpec]
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec]
    start: str = "start"
    routes: dict[str, str] = Field(default_factory=dict)
    answers: dict[str, str] = Field(default_factory=dict)
    handoff: HandoffSpec = Field(default_factory=HandoffSpec)
    keypad: KeypadSpec = Field(default_factory=KeypadSpec)
    messages: Messages = Field(default_factory=Messages)
    max_misunderstandings: int = Field(default=2, ge=1)
    # The CRM context gate's section (``crm/gate.py``), checked by ContextPolicy, and
    # the extra handoff rules (``handoff/rules.py``), checked by HandoffPolicy.
    context: dict[str, Any] | None = None
    # The compliance section (PCI pause, redaction), checked by compliance/policy.py.
    compliance: dict[str, Any] | None = None
    handoff_rules: dict[str, Any] | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    # What callers beyond capacity get; validated by server.admission.load_overflow.
    overflow: dict[str, str] | None = None

    @field_validator("intents", mode="before")
    @classmethod
    def _list_shorthand(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"examples": v} if isinstance(v, list) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> AgentSpec:
        if "{disclosure}" not in self.greeting:
            raise _Bad("greeting", "must contain {disclosure} (rule 1)")
        if "robot" not in self.intents:
            raise _Bad("intents", "the intent 'robot' is required (rule 2)")
        _exists("start", self.start, self.nodes, "node")
        for key, target in self.routes.items():
            _exists(f"routes.{key}", key, self.intents, "intent")
            _exists(f"routes.{key}", target, self.nodes, "node")
        for key in self.answers:
            _exists(f"answers.{key}", key, self.intents, "intent")
        for index, intent in enumerate(self.handoff.intents):
            _exists(f"handoff.intents.{index}", intent, self.intents, "intent")
        for name, node in self.nodes.items():
            self._check_node(name, node)
        self._check_next_cycles()
        self._check_templates()
        return self

    def _check_node(self, name: str, node: NodeSpec) -> None:
        where = f"nodes.{name}"
        for group in ("collect", "optional"):
            for index, slot in enumerate(getattr(node, group)):
                _exists(f"{where}.{group}.{index}", slot, self.slots, "slot")
        for slot in node.ask:
            if slot not in node.collect:
                raise _Bad(f"{where}.ask.{slot}", f"slot {slot!r} is not in collect")
        if node.next is not None:
            _exists(f"{where}.next", node.next, self.nodes, "node")
        for key, target in node.transitions.items():
            if key not in (YES, NO):
                _exists(f"{where}.transitions.{key}", key, self.intents, "intent")
            _exists(f"{where}.transitions.{key}", target, self.nodes, "node")
        if node.action is not None:
            required, _ = ACTIONS[node.action]
            types = {self.slots[s].type for s in node.collect}
            missing = sorted(required - types)
            if missing:
                raise _Bad(f"{where}.collect", f"{node.action} needs slots of type {missing}")
        if node.action is not None and not node.next and not node.end_call:
            raise _Bad(f"{where}.next", "a node with an action needs next or end_call")

    def _check_next_cycles(self) -> None:
        for name in self.nodes:
            seen = [name]
            node = self.nodes[name]
            while node.next is not None and not (node.prompt or node.collect or node.action):
                if node.next in seen:
                    raise _Bad(
                        f"nodes.{name}.next", f"never waits: {' -> '.join([*seen, node.next])}"
                    )
                seen.append(node.next)
                node = self.nodes[node.next]

    def template_texts(self) -> list[tuple[str, str]]:
        """Every text template the agent may speak, as ``(field path, template)``."""
        texts: list[tuple[str, str | None]] = [
            ("greeting", self.greeting),
            ("handoff.text", self.handoff.text),
            *((f"answers.{k}", v) for k, v in self.answers.items()),
            *((f"slots.{k}.prompt", v.prompt) for k, v in self.slots.items()),
            *((f"messages.{k}", v) for k, v in self.messages.model_dump().items()),
        ]
        for name, node in self.nodes.items():
            for key in ("say", "prompt", "confirm", "declined", "done", "not_found"):
                texts.append((f"nodes.{name}.{key}", getattr(node, key)))
            texts.extend((f"nodes.{name}.ask.{k}", v) for k, v in node.ask.items())
        return [(where, text) for where, text in texts if text is not None]

    def _check_templates(self) -> None:
        known = set(self.slots) | BUILT_IN_FIELDS
        for where, text in self.template_texts():
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                raise _Bad(where, f"bad template: {exc}") from exc
            unknown = sorted(fields - known)
            if unknown:
                raise _Bad(where, f"unknown placeholder {{{unknown[0]}}} (rule 3)")


class _Bad(ValueError):
    """A rule broken at a known field (turned into a ConfigError naming it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _exists(where: str, name: str, known: Mapping[str, object], kind: str) -> None:
    if name not in known:
        raise _Bad(where, f"unknown {kind} {name!r}")


def load_agent_spec(path: str | Path) -> AgentSpec:
    """Read and validate an agent file.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or breaks the
            schema or a rule; the message names the file and the first bad field.
    """
    source = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("an agent file must be a mapping", source=source)
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, _Bad):
            raise ConfigError(str(cause), source=source, field=cause.field) from exc
        field = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"].lower().removeprefix("value error, ")
        raise ConfigError(message, source=source, field=field) from exc
