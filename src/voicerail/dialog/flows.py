"""The flow engine: slot-filling tasks with explicit confirmation and recovery.

Rules kept here:

1. Every call has its own :class:`FlowDialog`; the agent (:class:`FlowAgent`)
   holds only read-only things shared by calls (spec, intent embeddings, store).
2. On each caller turn, in order: the built-in intents (``human``, ``robot``)
   and fixed answers, when recognized with the higher ``global_threshold``;
   then what the dialog waits for (a confirmation, "anything else?"); then slot
   values for the active flow — all of them, so a caller may say everything at
   once; then a new flow's intent.
3. A turn that moves nothing forward is a misunderstanding; the agent says so
   and asks again. After ``max_misunderstandings`` in a row, or on an explicit
   request (intent ``human`` or key 0), it hands off to a human.
4. Actions that write carry an idempotency key ``{call_id}:{action}:{n}``.
5. After an answer to a side question (hours, "are you a robot?") the agent
   asks the pending question again, so the flow resumes where it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from voicerail.dialog.base import AgentReply
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.flow_config import AgentSpec, FlowSpec, load_agent_spec
from voicerail.dialog.nlu import Embedder, IntentClassifier
from voicerail.dialog.slots import (
    extract_day,
    extract_name,
    extract_time,
    extract_yes_no,
    format_day,
    format_time,
)
from voicerail.events.model import Outcome

SlotValue = date | time | str
_GLOBAL = ("human", "robot")


@dataclass
class _CallState:
    flow: str | None = None
    slots: dict[str, SlotValue] = field(default_factory=dict)
    awaiting: str | None = None  # a slot name, "confirm" or "anything_else"
    misunderstandings: int = 0
    actions_done: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)


class FlowAgent:
    """A loaded agent; builds one :class:`FlowDialog` per call.

    Args:
        spec: the validated agent file.
        bookings: the appointment store actions write to.
        embedder: sentence embedder for intents.
        today: returns the caller's local date (injected for tests).
    """

    def __init__(
        self,
        spec: AgentSpec,
        *,
        bookings: BookingStore,
        embedder: Embedder,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.bookings = bookings
        self.today = today
        self.classifier = IntentClassifier(embedder, spec.intents)

    def new_dialog(self, call_id: str) -> FlowDialog:
        """A fresh conversation for ``call_id``."""
        return FlowDialog(self, call_id)


class FlowDialog:
    """One call's conversation with a :class:`FlowAgent` (see the module rules)."""

    def __init__(self, agent: FlowAgent, call_id: str) -> None:
        self.agent = agent
        self.spec = agent.spec
        self.call_id = call_id
        self.state = _CallState()

    # -- Dialog interface ------------------------------------------------------

    async def start(self) -> AgentReply:
        return self._reply(self.spec.greeting, node="greeting")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        self.state.history.append(("user", text))
        # The embedding runs in a thread: it is CPU work, and calls run concurrently.
        scores = await asyncio.to_thread(self.agent.classifier.scores, text)
        return self._decide(text, {m.name: m.score for m in scores})

    async def on_dtmf(self, digits: str) -> AgentReply:
        if digits == "0":
            return self._handoff(reason="dtmf_0")
        if self.state.awaiting == "confirm" and digits in ("1", "2"):
            return self._on_confirm(digits == "1")
        return self._not_understood()

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        messages = self.spec.messages
        if final:
            return self._reply(messages.silence_goodbye, end_call=True, node="silence")
        return self._reply(f"{messages.silence_reprompt} {self._pending_prompt()}".strip())

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        history = self.state.history
        if history and history[-1] == ("agent", full_text):
            history[-1] = ("agent", heard_text)

    # -- decisions -------------------------------------------------------------

    def _decide(self, text: str, scores: dict[str, float]) -> AgentReply:
        spec = self.spec
        best = max(scores, key=lambda n: scores[n]) if scores else None
        if best in _GLOBAL + tuple(spec.answers) and scores[best] >= spec.global_threshold:
            if best == "human":
                return self._handoff(reason="requested")
            return self._answer(best)
        if self.state.awaiting == "confirm":
            decision = extract_yes_no(text)
            if decision is not None:
                return self._on_confirm(decision)
        if self.state.awaiting == "anything_else":
            decision = extract_yes_no(text)
            new_flow = self._flow_intent(scores)
            if new_flow is None and decision is False:
                return self._reply(spec.messages.goodbye, end_call=True, node="goodbye")
            if new_flow is None and decision is True:
                self.state.awaiting = None
                return self._reply(spec.messages.how_can_i_help, node="top")
        if self.state.flow is not None and self._fill_slots(text):
            return self._advance()
        new_flow = self._flow_intent(scores)
        if new_flow is not None:
            self.state.flow, self.state.slots = new_flow, {}
            self._fill_slots(text)
            return self._advance(intent=new_flow)
        if best in spec.answers and scores[best] >= spec.intent_threshold:
            return self._answer(best)
        return self._not_understood()

    def _flow_intent(self, scores: dict[str, float]) -> str | None:
        candidates = {
            name: scores.get(flow.start or name, -1.0) for name, flow in self.spec.flows.items()
        }
        if not candidates:
            return None
        best = max(candidates, key=lambda n: candidates[n])
        return best if candidates[best] >= self.spec.intent_threshold else None

    def _fill_slots(self, text: str) -> bool:
        """Extract every slot the active flow needs; True when something was filled."""
        flow = self._flow()
        filled = False
        today = self.agent.today()
        for name in flow.slots:
            kind = self.spec.slots[name].type
            value: SlotValue | None
            if kind == "day":
                value = extract_day(text, today)
            elif kind == "time":
                value = extract_time(text)
            else:
                value = extract_name(text, asked=self.state.awaiting == name)
            if value is not None:
                self.state.slots[name] = value
                filled = True
        if filled and self.state.awaiting == "confirm":
            self.state.awaiting = None  # a correction: confirm the new values
        return filled

    def _advance(self, intent: str | None = None) -> AgentReply:
        flow = self._flow()
        self.state.misunderstandings = 0
        missing = [s for s in flow.slots if s not in self.state.slots]
        if missing:
            self.state.awaiting = missing[0]
            return self._reply(self.spec.slots[missing[0]].prompt, intent=intent)
        if flow.confirm and self.state.awaiting != "confirmed":
            self.state.awaiting = "confirm"
            return self._reply(self._format(flow.confirm), intent=intent, node="confirm")
        return self._run_action()

    def _on_confirm(self, yes: bool) -> AgentReply:
        self.state.misunderstandings = 0
        if yes:
            return self._run_action()
        flow = self._flow()
        for name in flow.slots:
            if self.spec.slots[name].type != "name":
                self.state.slots.pop(name, None)
        self.state.awaiting = None
        reply = self._advance()
        return self._reply(f"{self.spec.messages.declined} {reply.text}", node=reply.node)

    def _run_action(self) -> AgentReply:
        flow = self._flow()
        values = dict(self.state.slots)
        self.state.actions_done += 1
        key = f"{self.call_id}:{flow.action}:{self.state.actions_done}"
        booking_id: str | None = None
        found = True
        if flow.action == "book_appointment":
            booking = self.agent.bookings.create(
                self.call_id,
                str(values["name"]),
                _as(values["day"], date),
                _as(values["time"], time),
                key,
            )
            booking_id = booking.booking_id
        elif flow.action in ("reschedule_appointment", "cancel_appointment"):
            matches = self.agent.bookings.find(str(values["name"]))
            found = bool(matches)
            if matches and flow.action == "cancel_appointment":
                booking_id = matches[0].booking_id
                self.agent.bookings.cancel(booking_id)
            elif matches:
                booking_id = matches[0].booking_id
                self.agent.bookings.reschedule(
                    booking_id, _as(values["day"], date), _as(values["time"], time)
                )
        text = self._format(flow.done if found else flow.not_found, booking_id=booking_id)
        self.state.flow, self.state.slots, self.state.awaiting = None, {}, "anything_else"
        return self._reply(
            f"{text} {self.spec.messages.anything_else}",
            outcome=Outcome.COMPLETED if found else None,
            booking_id=booking_id if flow.action == "book_appointment" else None,
            node="done",
            data={"action": flow.action, "found": found},
            pii={k: self._spoken(v) for k, v in values.items()},
        )

    def _answer(self, intent: str) -> AgentReply:
        self.state.misunderstandings = 0
        pending = self._pending_prompt()
        return self._reply(f"{self.spec.answers[intent]} {pending}".strip(), intent=intent)

    def _handoff(self, *, reason: str) -> AgentReply:
        return self._reply(
            self.spec.messages.handoff,
            handoff=True,
            end_call=True,
            outcome=Outcome.HANDOFF,
            intent="human",
            node="handoff",
            data={"handoff_reason": reason},
        )

    def _not_understood(self) -> AgentReply:
        self.state.misunderstandings += 1
        if self.state.misunderstandings >= self.spec.max_misunderstandings:
            return self._handoff(reason="misunderstood")
        text = f"{self.spec.messages.not_understood} {self._pending_prompt()}".strip()
        return self._reply(text, node="reprompt", data={"misunderstandings": 1})

    # -- helpers ---------------------------------------------------------------

    def _flow(self) -> FlowSpec:
        assert self.state.flow is not None
        return self.spec.flows[self.state.flow]

    def _pending_prompt(self) -> str:
        awaiting = self.state.awaiting
        if awaiting in self.spec.slots:
            return self.spec.slots[awaiting].prompt
        if awaiting == "confirm":
            return self._format(self._flow().confirm or "")
        if awaiting == "anything_else":
            return self.spec.messages.anything_else
        return self.spec.messages.how_can_i_help

    def _format(self, template: str, **extra: Any) -> str:
        values = {k: self._spoken(v) for k, v in self.state.slots.items()}
        values.update({k: v for k, v in extra.items() if v is not None})
        try:
            return template.format(**values)
        except (KeyError, IndexError):
            return template

    @staticmethod
    def _spoken(value: SlotValue) -> str:
        if isinstance(value, date):
            return format_day(value)
        if isinstance(value, time):
            return format_time(value)
        return value

    def _reply(self, text: str, **fields: Any) -> AgentReply:
        self.state.history.append(("agent", text))
        data = dict(fields.pop("data", {}))
        data.setdefault("awaiting", self.state.awaiting)
        data.setdefault("flow", self.state.flow)
        fields.setdefault("node", self.state.awaiting or self.state.flow or "top")
        return AgentReply(text=text, data=data, **fields)


def _as(value: SlotValue, kind: type) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"slot value {type(value).__name__} is not a {kind.__name__}")
    return value


def load_agent(
    path: str | Path,
    *,
    bookings: BookingStore,
    embedder: Embedder | None = None,
    today: Callable[[], date] | None = None,
) -> FlowAgent:
    """Load an agent file into a :class:`FlowAgent`.

    Raises:
        ConfigError: the file is invalid (see :func:`load_agent_spec`).
    """
    if embedder is None:
        from voicerail.dialog.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder()
    spec = load_agent_spec(path)
    return FlowAgent(spec, bookings=bookings, embedder=embedder, today=today or date.today)
