"""The LLM dialog mode: a system prompt and tools instead of (or beside) flows.

The agent file has an ``llm`` section::

    name: Riverside Family Clinic (LLM)
    greeting: "Hi, you're talking to the clinic's AI assistant; this call may be recorded. ..."
    llm:
      system_prompt: "You are the phone assistant of ..."
      tools: [book_appointment, cancel_appointment, transfer_to_human, end_call]
      max_tool_rounds: 3

Rules kept here:

1. Tools that write (``book_appointment``, ``cancel_appointment``) carry an
   idempotency key derived from the call, the caller turn, the tool name and its
   canonical arguments — not from the provider's tool-call id — so a reply that
   is replayed (a retry, or a failover that restarts it on another provider)
   finds the first write and never repeats the side effect.
2. After a barge-in only the words the caller heard stay in the assistant's
   message history (``on_agent_heard``).
3. ``transfer_to_human`` ends the turn with a handoff; ``end_call`` with a goodbye.
4. With a CRM, the caller is looked up when the call starts (``caller_known``)
   and the greeting does not wait; the first caller turn waits at most the
   lookup's deadline. Only the fields the agent file's ``context`` section
   allows reach the prompt (``crm/gate.py``); ``verify_caller`` checks an answer
   against a hidden field inside the gate and may reveal more fields.
5. With an outbox, the booking tools go through it (``crm/bookings.py``):
   ``book_appointment`` records the booking as a CRM write in the outbox, with
   the call's state, instead of writing the booking store; the confirmation
   number is derived from the idempotency key, so the caller hears the number
   the relay will later write, however often it is replayed. A
   ``cancel_appointment`` is a write of the booking's final state through the
   outbox too, so the CRM hears of it, after the booking, or instead of it
   when the booking was not delivered yet.
6. A write tool that the model calls again in the same call with the same
   arguments (the caller barged in after the tool ran and repeated the
   request on a later turn, so rule 1's key differs) is not run again: the
   model gets the first result. A different argument is a different write.
7. ``transfer_to_human`` builds the handoff summary (``handoff/summary.py``)
   from the gated context, the writes done and the caller's last words; it is
   returned in the reply (``pii["handoff_summary"]``, so the driver stores it
   in the event's marked field) and, with an outbox, written to the CRM.
8. With an outbox, the end of the call queues a call summary and a disposition,
   and a lead when the CRM did not know the caller (``on_call_ended``), keyed
   by the call alone, so a call ended twice (a resumed worker) writes once.
9. A call can go on in another stream (``state/resume.py``): ``snapshot()``
   gives the history, the turn number, the writes done (rule 6) and whether the
   call ended (``llm_state.py``); ``restore()`` takes it back and ``resume()``
   opens the new stream with ``resumed_text``, the writes done and the question
   the caller was last asked, which the model then sees in its history.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import date, time
from typing import Any

from voicerail.clock import Clock, SystemClock
from voicerail.crm.bookings import OutboxBookings
from voicerail.crm.gate import ContextGate, ContextPolicy
from voicerail.crm.lookup import CallerLookup
from voicerail.crm.model import CRMConnector, CRMWrite, WriteAction, normalize_phone
from voicerail.crm.outbox import Outbox
from voicerail.dialog.base import AgentReply
from voicerail.dialog.bookings import Bookings, BookingStore
from voicerail.dialog.llm_config import LLMAgentSpec as LLMAgentSpec
from voicerail.dialog.llm_config import LLMSection as LLMSection
from voicerail.dialog.llm_config import load_llm_agent_spec as load_llm_agent_spec
from voicerail.dialog.llm_state import (
    LLM_SNAPSHOT,
    messages_from_json,
    messages_to_json,
    writes_from_json,
    writes_to_json,
)
from voicerail.dialog.llm_tools import (
    TOOLS,
    ToolResult,
    action_text,
    merge_results,
    spoken_action,
)
from voicerail.errors import DialogError, StoreError
from voicerail.events.model import Outcome
from voicerail.handoff.rules import HandoffReason
from voicerail.handoff.summary import HandoffSummary, build_summary
from voicerail.providers.base import (
    ChatMessage,
    LanguageModel,
    ToolCall,
    closing_stream,
)

log = logging.getLogger(__name__)


class LLMAgent:
    """Builds one :class:`LLMDialog` per call.

    Args:
        spec: the validated agent file.
        llm: the language model (usually the router's per-call LLM or a cloud adapter).
        bookings: where the booking tools write; with an ``outbox``, a booking
            store is wrapped to write through it (rule 5).
        today: the caller's local date, given to the model in the system prompt.
        crm: the CRM the caller is looked up in (rule 4); None: no lookup.
        outbox: where writes are recorded for the relay (rule 5); None: the
            booking store directly.
        lookup_deadline_s: how long the first caller turn may wait for the lookup.
        clock: the wall clock of the outbox's times.
        dashboard_url: the dashboard's base URL, for the handoff summary's link.
    """

    def __init__(
        self,
        spec: LLMAgentSpec,
        *,
        llm: LanguageModel,
        bookings: Bookings,
        today: Callable[[], date] = date.today,
        crm: CRMConnector | None = None,
        outbox: Outbox | None = None,
        lookup_deadline_s: float = 1.5,
        clock: Clock | None = None,
        dashboard_url: str = "",
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.llm = llm
        self.clock = clock or SystemClock()
        if outbox is not None and isinstance(bookings, BookingStore):
            bookings = OutboxBookings(bookings, outbox, self.clock)
        self.bookings = bookings
        self.today = today
        self.tools = [TOOLS[name] for name in spec.llm.tools]
        self.context_policy = ContextPolicy.from_mapping(spec.context, source=spec.name)
        self.crm = crm
        self.outbox = outbox
        self.lookup_deadline_s = lookup_deadline_s
        self.dashboard_url = dashboard_url

    def fixed_texts(self) -> list[str]:
        """What this agent says whatever the caller said: the greeting."""
        return [self.spec.greeting]

    def new_dialog(self, call_id: str) -> LLMDialog:
        """A fresh conversation for ``call_id``."""
        return LLMDialog(self, call_id)


class LLMDialog:
    """One call's conversation with an LLM agent."""

    def __init__(self, agent: LLMAgent, call_id: str) -> None:
        self.agent = agent
        self.call_id = call_id
        self.turn = 0
        system = f"{agent.spec.llm.system_prompt}\nToday is {agent.today().isoformat()}."
        self.messages: list[ChatMessage] = [ChatMessage("system", system)]
        self.lookup: CallerLookup | None = None
        self.gate: ContextGate | None = None
        self._writes_done: dict[tuple[str, str], ToolResult] = {}
        self.phone = ""
        self._handed_off = False
        self._ended = False  # said goodbye or handed off (rule 9: not resumable)

    def caller_known(self, phone: str) -> None:
        """Start looking the caller up (rule 4); returns at once."""
        self.phone = phone
        if self.agent.crm is not None and self.lookup is None and phone:
            policy, deadline_s = self.agent.context_policy, self.agent.lookup_deadline_s
            self.lookup = CallerLookup(self.agent.crm, policy, phone, deadline_s)
            self.lookup.start()

    async def _open_gate(self) -> dict[str, Any]:
        """On the first caller turn: the gated context into the prompt; safe event data."""
        if self.lookup is None or self.gate is not None:
            return {}
        self.gate = await self.lookup.gate(wait_s=self.agent.lookup_deadline_s)
        context = self.gate.context()
        self.messages.insert(1, ChatMessage("system", context.prompt_text()))
        return {
            "crm_known_caller": context.known_caller,
            "crm_fields": context.field_names,
            "crm_lookup": self.lookup.reason or "ok",
        }

    async def start(self) -> AgentReply:
        self.messages.append(ChatMessage("assistant", self.agent.spec.greeting))
        return AgentReply(self.agent.spec.greeting, node="greeting")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        self.turn += 1
        crm_data = await self._open_gate()
        self.messages.append(ChatMessage("user", text))
        reply = await self._complete()
        if crm_data:
            reply.data.update(crm_data)
        return reply

    async def on_dtmf(self, digits: str) -> AgentReply:
        return await self.on_user_turn(f"(the caller pressed the key {digits})", None)

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        section = self.agent.spec.llm
        text = section.silence_goodbye if final else section.silence_reprompt
        self.messages.append(ChatMessage("assistant", text))
        self._ended = self._ended or final
        return AgentReply(text, end_call=final, node="silence")

    # -- resume (rule 9) ---------------------------------------------------------

    def snapshot(self, *, free_text: bool = True) -> dict[str, Any]:
        """The conversation as JSON-ready data (``llm_state.py``; ``free_text``
        False: no caller words, its rule 2)."""
        return {
            "llm": LLM_SNAPSHOT,
            "turn": self.turn,
            "messages": messages_to_json(self.messages, free_text=free_text),
            "writes": writes_to_json(self._writes_done),
            "phone": self.phone,
            "handed_off": self._handed_off,
            "ended": self._ended,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Carry on from a :meth:`snapshot` taken on another worker.

        Raises:
            StoreError: ``snapshot`` is not an LLM dialog's, or unreadable.
        """
        try:
            if snapshot["llm"] != LLM_SNAPSHOT:
                raise ValueError(f"llm snapshot layout {snapshot['llm']!r}")
            messages = messages_from_json(snapshot["messages"])
            writes = writes_from_json(snapshot["writes"])
            turn, phone = int(snapshot["turn"]), str(snapshot["phone"])
            handed_off, ended = bool(snapshot["handed_off"]), bool(snapshot["ended"])
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"call {self.call_id}: unreadable llm snapshot: {exc}") from None
        self.messages = [self.messages[0], *messages]
        self._writes_done, self.turn, self.phone = writes, turn, phone
        self._handed_off, self._ended = handed_off, ended

    async def resume(self) -> AgentReply:
        """The first reply of a resumed call: the apology, the writes done and the
        question last asked ("Sorry, I lost you for a moment. I have booked
        Tuesday, November 24 at 3 PM for Maria Lopez. Anything else?")."""
        parts = [self.agent.spec.llm.resumed_text]
        done = [
            spoken_action(name, json.loads(args), result)
            for (name, args), result in self._writes_done.items()
        ]
        if done:
            parts.append(f"I have {' and '.join(done)}.")
        last = self.messages[-1]
        if last.role == "assistant" and last.content and not last.tool_calls:
            parts.append(last.content)
        text = " ".join(p for p in parts if p)
        self.messages.append(ChatMessage("assistant", text))
        return AgentReply(text, node="resumed", data={"turn": self.turn})

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        last = self.messages[-1]
        if last.role == "assistant" and last.content == full_text:
            self.messages[-1] = ChatMessage("assistant", heard_text)

    async def _complete(self) -> AgentReply:
        final = ToolResult(content={})
        for _ in range(self.agent.spec.llm.max_tool_rounds):
            text, calls = await self._chat_once()
            if not calls:
                self.messages.append(ChatMessage("assistant", text))
                return self._reply(text, final)
            self.messages.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
            for call in calls:
                result = self._run_tool_once(call)
                final = merge_results(final, result)
                self.messages.append(
                    ChatMessage("tool", json.dumps(result.content), tool_call_id=call.id)
                )
            if final.handoff or final.end_call:
                section = self.agent.spec.llm
                closing = section.handoff_text if final.handoff else (text or section.goodbye_text)
                self.messages.append(ChatMessage("assistant", closing))
                return self._reply(closing, final)
        raise DialogError(
            f"no spoken reply after {self.agent.spec.llm.max_tool_rounds} tool rounds"
        )

    async def _chat_once(self) -> tuple[str, list[ToolCall]]:
        parts: list[str] = []
        calls: list[ToolCall] = []
        stream = self.agent.llm.chat(self.messages, tools=self.agent.tools)
        async with closing_stream(stream):
            async for delta in stream:
                parts.append(delta.text)
                if delta.tool_call is not None:
                    calls.append(delta.tool_call)
        return "".join(parts).strip(), calls

    def idempotency_key(self, call: ToolCall) -> str:
        """``{call_id}:t{turn}:{tool}:{hash of canonical arguments}`` (rule 1)."""
        canonical = json.dumps(call.arguments, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return f"{self.call_id}:t{self.turn}:{call.name}:{digest}"

    def _run_tool_once(self, call: ToolCall) -> ToolResult:
        """Rule 6: a write tool called again with the same arguments in this call
        returns what the first call did and writes nothing."""
        spec = TOOLS.get(call.name)
        if spec is None or not spec.writes:
            return self._run_tool(call)
        canonical = json.dumps(call.arguments, sort_keys=True, separators=(",", ":"))
        done = self._writes_done.get((call.name, canonical))
        if done is not None:
            return ToolResult(
                {**done.content, "note": "already done earlier in this call"},
                booking_id=done.booking_id,
                outcome=done.outcome,
            )
        result = self._run_tool(call)
        if "error" not in result.content and result.content.get("status") != "not_found":
            self._writes_done[(call.name, canonical)] = result
        return result

    def _run_tool(self, call: ToolCall) -> ToolResult:
        args = call.arguments
        try:
            if call.name == "verify_caller":
                ok = self.gate is not None and self.gate.verify(
                    str(args["check"]), str(args["value"])
                )
                if not ok or self.gate is None:
                    return ToolResult({"verified": False})
                return ToolResult({"verified": True, "context": dict(self.gate.context().fields)})
            if call.name == "book_appointment":
                booking = self.agent.bookings.create(
                    self.call_id,
                    str(args["name"]),
                    date.fromisoformat(str(args["day"])),
                    time.fromisoformat(str(args["time"])),
                    self.idempotency_key(call),
                )
                return ToolResult(
                    {"booking_id": booking.booking_id, "status": "booked"},
                    booking_id=booking.booking_id,
                    outcome=Outcome.COMPLETED,
                )
            if call.name == "cancel_appointment":
                matches = self.agent.bookings.find(str(args["name"]))
                if not matches:
                    return ToolResult({"status": "not_found"})
                self.agent.bookings.cancel(matches[0].booking_id)
                return ToolResult({"status": "cancelled"}, outcome=Outcome.COMPLETED)
            if call.name == "transfer_to_human":
                summary = self._handoff_summary()
                return ToolResult(
                    {"status": "transferring"},
                    handoff=True,
                    outcome=Outcome.HANDOFF,
                    summary=summary,
                )
            if call.name == "end_call":
                return ToolResult({"status": "ending"}, end_call=True)
            if call.name == "collect_payment":
                # The digits go to the tokenizer, never to the model: it hears a token.
                return ToolResult({"status": "keypad_capture_started"}, pci=True)
        except (KeyError, ValueError) as exc:
            # The model sent bad arguments: tell it, so it can ask the caller again.
            return ToolResult({"error": f"invalid arguments: {exc}"})
        return ToolResult({"error": f"unknown tool {call.name!r}"})

    def on_call_ended(self, outcome: str, turns: int) -> None:
        """Rule 8: queue the call-end writes; a store failure is logged, never raised."""
        if self.agent.outbox is None:
            return
        bookings = sorted(str(r.booking_id) for r in self._writes_done.values() if r.booking_id)
        summary = {
            "outcome": outcome,
            "turns": turns,
            "bookings": bookings,
            "handoff": self._handed_off,
        }
        writes = [
            CRMWrite(
                f"{self.call_id}:call_summary", self.call_id, WriteAction.CALL_SUMMARY, summary
            ),
            CRMWrite(
                f"{self.call_id}:disposition",
                self.call_id,
                WriteAction.DISPOSITION,
                {"disposition": outcome},
            ),
        ]
        unknown = self.gate is not None and not self.gate.context().known_caller
        if unknown and self.phone:
            lead = {
                "phone": normalize_phone(self.phone),
                "source": "phone call",
                "outcome": outcome,
            }
            writes.append(CRMWrite(f"{self.call_id}:lead", self.call_id, WriteAction.LEAD, lead))
        state = json.dumps({"ended": outcome, "turns": turns})
        try:
            self.agent.outbox.record(self.call_id, state, writes, self.agent.clock.wall())
        except StoreError as exc:
            log.warning("call-end crm writes not recorded: %s", exc)

    def _handoff_summary(self) -> HandoffSummary:
        """Rule 7: the summary at handoff time, written to the CRM through the outbox."""
        context = self.gate.context() if self.gate is not None else None
        actions = [
            action_text(name, json.loads(args), result)
            for (name, args), result in self._writes_done.items()
        ]
        last_user = next((m.content for m in reversed(self.messages) if m.role == "user"), "")
        self._handed_off = True
        summary = build_summary(
            call_id=self.call_id,
            reason=HandoffReason.TOOL,
            context=context.fields if context else {},
            known_caller=bool(context and context.known_caller),
            collected={name: json.loads(args) for name, args in self._writes_done},
            actions=actions,
            last_caller_text=last_user,
            dashboard_url=self.agent.dashboard_url,
        )
        if self.agent.outbox is not None:
            key = f"{self.call_id}:t{self.turn}:handoff_summary"
            write = CRMWrite(key, self.call_id, WriteAction.HANDOFF_SUMMARY, summary.to_dict())
            state = json.dumps({"turn": self.turn, "handoff": summary.safe_dict()})
            self.agent.outbox.record(self.call_id, state, [write], self.agent.clock.wall())
        return summary

    def _reply(self, text: str, result: ToolResult) -> AgentReply:
        data: dict[str, Any] = {"turn": self.turn}
        if result.pci:
            data["pci"] = "start"
        pii: dict[str, Any] = {}
        if result.summary is not None:
            data["handoff"] = result.summary.safe_dict()
            pii["handoff_summary"] = result.summary.to_dict()
            pii["handoff_whisper"] = result.summary.whisper_text()
        self._ended = self._ended or result.end_call or result.handoff
        return AgentReply(
            text=text,
            end_call=result.end_call or result.handoff,
            handoff=result.handoff,
            outcome=result.outcome,
            booking_id=result.booking_id,
            node="llm",
            data=data,
            pii=pii,
        )
