"""CRM recognition and handoff summaries for dialogs that do not build them (the flow engine).

Wraps any :class:`~voicerail.dialog.base.DialogFactory`:

1. ``caller_known(phone)`` starts the caller lookup (``crm/lookup.py``); the
   first caller turn opens the gate and its reply's ``data`` says whether the
   caller was recognized and which fields the agent may see (names only).
2. A reply that hands off without a summary gets one (``handoff/summary.py``):
   the reason from the dialog's ``handoff_reason`` (``requested`` and ``keypad``
   → explicit, ``misunderstood`` → misunderstanding, ``store_failed`` → error),
   the gated fields, the slots collected (the reply's ``pii`` so far), the
   booking made and the caller's last words. It goes into the reply's ``pii``
   (and the CRM through the outbox when there is one), as the LLM agent does.
3. The agent file's ``handoff_rules`` (``handoff/rules.py``) add the triggers
   the flow engine does not have: a listed intent, a customer tier from the
   gated CRM fields, and sentiment when a scorer is given (none ships yet).
   The flow engine keeps its own two rules (asking for a person, two turns not
   understood); a reply that a rule hands off becomes a handoff reply with the
   agent's handoff text.
4. Everything else is passed through unchanged.
5. When the gate opens on a recognized caller, the context section's ``fill``
   slots (``crm/gate.py``) are filled from the gated fields in the inner flow
   dialog's state (``dialog/flow_state.py``'s ``slots``) when still empty: a
   known caller is not asked their name, and the confirmation reads it from
   the CRM (a name the caller says still replaces it). The reply's ``data`` names the slots
   filled (``crm_filled``), never their values.
6. A resumed call (``state/resume.py``) keeps the rule counters (turns not
   understood, negative turns in a row), the caller's turn count, the slots
   and actions for the summary: they travel in the inner dialog's snapshot
   under :data:`SNAPSHOT_KEY`, which the inner dialog never sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from voicerail.clock import Clock, SystemClock
from voicerail.crm.gate import ContextGate, ContextPolicy
from voicerail.crm.lookup import CallerLookup
from voicerail.crm.model import CRMConnector, CRMWrite, WriteAction
from voicerail.crm.outbox import Outbox
from voicerail.dialog.base import AgentReply, Dialog, DialogFactory, snapshot_with
from voicerail.errors import StoreError
from voicerail.events.model import Outcome
from voicerail.handoff.rules import (
    HandoffPolicy,
    HandoffReason,
    HandoffState,
    TurnSignals,
    decide,
)
from voicerail.handoff.summary import build_summary

log = logging.getLogger(__name__)

_REASONS = {
    "requested": HandoffReason.EXPLICIT,
    "keypad": HandoffReason.EXPLICIT,
    "misunderstood": HandoffReason.MISUNDERSTANDING,
    "store_failed": HandoffReason.ERROR,
    **{str(r): r for r in HandoffReason},
}
#: Where this wrapper's own state sits in the call's dialog snapshot (rule 5).
SNAPSHOT_KEY = "_handoff"
_HANDOFF_TEXT = "Let me transfer you to a member of our staff. Please hold."


class ContextualAgent:
    """A dialog factory whose dialogs recognize the caller and summarize handoffs.

    Args:
        inner: the agent (e.g. a ``FlowAgent``).
        crm: the CRM to look callers up in; None: no lookup (summaries still built).
        policy: the agent file's ``context`` section.
        outbox: where handoff summaries are written for the CRM; None: not written.
        lookup_deadline_s: how long the first caller turn may wait for the lookup.
        dashboard_url: the dashboard's base URL, for the summary's transcript link.
        clock: the outbox's wall clock.
        rules: the extra handoff rules (rule 3); None: none.
        handoff_text: what the agent says when a rule hands off.
        sentiment: scores a caller turn in [-1, 1] for the sentiment rule.
    """

    def __init__(
        self,
        inner: DialogFactory,
        *,
        crm: CRMConnector | None,
        policy: ContextPolicy,
        outbox: Outbox | None = None,
        lookup_deadline_s: float = 1.5,
        dashboard_url: str = "",
        clock: Clock | None = None,
        rules: HandoffPolicy | None = None,
        handoff_text: str = _HANDOFF_TEXT,
        sentiment: Callable[[str], float] | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.crm = crm
        self.policy = policy
        self.outbox = outbox
        self.lookup_deadline_s = lookup_deadline_s
        self.dashboard_url = dashboard_url
        self.clock = clock or SystemClock()
        # The flow engine applies its own explicit and misunderstanding rules.
        self.rules = (
            replace(rules, explicit=False, tool=False, misunderstandings=0) if rules else None
        )
        self.handoff_text = handoff_text
        self.sentiment = sentiment

    def fixed_texts(self) -> list[str]:
        """The inner agent's fixed texts and the handoff text (the phrase cache's)."""
        inner: Callable[[], list[str]] = getattr(self.inner, "fixed_texts", list)
        return [*inner(), self.handoff_text]

    def new_dialog(self, call_id: str) -> ContextualDialog:
        """The inner agent's dialog for ``call_id``, wrapped."""
        return ContextualDialog(self, self.inner.new_dialog(call_id), call_id)


class ContextualDialog:
    """One call's wrapped dialog (rules 1-3)."""

    def __init__(self, agent: ContextualAgent, inner: Dialog, call_id: str) -> None:
        self.agent = agent
        self.inner = inner
        self.call_id = call_id
        self.lookup: CallerLookup | None = None
        self.gate: ContextGate | None = None
        self._last_text = ""
        self._collected: dict[str, Any] = {}
        self._actions: list[str] = []
        self._turns = 0
        self._rule_state = HandoffState()

    def caller_known(self, phone: str) -> None:
        """Rule 1: start the lookup; returns at once."""
        if self.agent.crm is not None and self.lookup is None and phone:
            self.lookup = CallerLookup(
                self.agent.crm, self.agent.policy, phone, self.agent.lookup_deadline_s
            )
            self.lookup.start()

    async def start(self) -> AgentReply:
        return await self.inner.start()

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        self._turns += 1
        crm_data = await self._open_gate()
        self._last_text = text
        reply = await self.inner.on_user_turn(text, confidence)
        reply.data.update(crm_data)
        return await self._after(self._apply_rules(reply, text))

    async def on_dtmf(self, digits: str) -> AgentReply:
        crm_data = await self._open_gate()
        reply = await self.inner.on_dtmf(digits)
        reply.data.update(crm_data)
        return await self._after(self._apply_rules(reply, None))

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return await self._after(await self.inner.on_silence(count, final))

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        self.inner.on_agent_heard(heard_text, full_text)

    def snapshot(self, *, free_text: bool = True) -> dict[str, Any]:
        """The inner dialog's state (``state/``) and, under :data:`SNAPSHOT_KEY`,
        this wrapper's own (rule 5); ``free_text`` False drops the caller's last
        words."""
        inner = getattr(self.inner, "snapshot", None)
        body: dict[str, Any] = {}
        if inner is not None:
            body = dict(snapshot_with(inner, free_text=free_text))
        body[SNAPSHOT_KEY] = {
            "turns": self._turns,
            "not_understood": self._rule_state.not_understood,
            "negative": self._rule_state.negative,
            "last_text": self._last_text if free_text else "",
            "actions": list(self._actions),
            "collected": {k: v for k, v in self._collected.items() if isinstance(v, str)},
        }
        return body

    def restore(self, snapshot: dict[str, Any]) -> None:
        """The inner dialog carries on from ``snapshot`` (``state/resume.py``), and
        this wrapper's counters come back (rule 5).

        Raises:
            StoreError: the inner dialog cannot be restored, or refuses the snapshot.
        """
        inner = getattr(self.inner, "restore", None)
        if inner is None:
            raise StoreError(f"call {self.call_id}: this dialog cannot be restored")
        body = dict(snapshot)
        own = body.pop(SNAPSHOT_KEY, None) or {}
        try:
            state = HandoffState(int(own.get("not_understood", 0)), int(own.get("negative", 0)))
            turns, last_text = int(own.get("turns", 0)), str(own.get("last_text", ""))
            actions = [str(a) for a in own.get("actions", [])]
            collected = {str(k): v for k, v in dict(own.get("collected", {})).items()}
        except (AttributeError, ValueError, TypeError) as exc:
            raise StoreError(f"call {self.call_id}: unreadable handoff snapshot: {exc}") from None
        inner(body)
        self._rule_state, self._turns, self._last_text = state, turns, last_text
        self._actions, self._collected = actions, collected

    async def resume(self) -> AgentReply:
        """The inner dialog's first reply of a resumed call."""
        resume: Callable[[], Awaitable[AgentReply]] | None = getattr(self.inner, "resume", None)
        if resume is None:
            return await self.inner.start()
        return await self._after(await resume())

    async def _open_gate(self) -> dict[str, Any]:
        if self.lookup is None or self.gate is not None:
            return {}
        self.gate = await self.lookup.gate(wait_s=self.agent.lookup_deadline_s)
        context = self.gate.context()
        return {
            "crm_known_caller": context.known_caller,
            "crm_fields": context.field_names,
            "crm_lookup": self.lookup.reason or "ok",
            "crm_filled": self._fill(context.fields) if context.known_caller else [],
        }

    def _fill(self, fields: Mapping[str, Any]) -> list[str]:
        """Rule 5; returns the slots filled."""
        state = getattr(self.inner, "state", None)
        slots = getattr(state, "slots", None)
        if not isinstance(slots, dict):
            return []
        filled = []
        for slot, names in self.agent.policy.fill.items():
            parts = [str(fields[n]).strip() for n in names if fields.get(n)]
            if len(parts) == len(names) and slot not in slots:
                slots[slot] = " ".join(parts)
                filled.append(slot)
        return filled

    def _apply_rules(self, reply: AgentReply, text: str | None) -> AgentReply:
        """Rule 3 on one caller turn (``text`` None for keys)."""
        rules = self.agent.rules
        if rules is None or reply.handoff:
            return reply
        scorer = self.agent.sentiment
        signals = TurnSignals(
            understood=reply.data.get("decision") != "not_understood",
            intent=reply.intent,
            sentiment=scorer(text) if scorer is not None and text else None,
            context=self.gate.context().fields if self.gate is not None else None,
        )
        self._rule_state, reason = decide(rules, self._rule_state, signals)
        if reason is None:
            return reply
        return AgentReply(
            text=self.agent.handoff_text,
            end_call=True,
            handoff=True,
            outcome=Outcome.HANDOFF,
            intent=reply.intent,
            node=reply.node,
            data={**reply.data, "handoff_reason": str(reason)},
            pii=dict(reply.pii),
        )

    async def _after(self, reply: AgentReply) -> AgentReply:
        """Rule 2, and the bookkeeping it needs (an intent recognized opens the
        gate's ``intent:<name>`` fields for the summary)."""
        if reply.intent and self.gate is not None:
            self.gate.hold(f"intent:{reply.intent}")
        self._collected.update({k: v for k, v in reply.pii.items() if k != "agent_text"})
        if reply.booking_id:
            self._actions.append(f"booked {reply.booking_id}")
        if not reply.handoff or "handoff_summary" in reply.pii:
            return reply
        reason = _REASONS.get(str(reply.data.get("handoff_reason")), HandoffReason.EXPLICIT)
        context = self.gate.context() if self.gate is not None else None
        tier_field = self.agent.rules.tier_field if self.agent.rules else None
        tier = context.fields.get(tier_field) if context and tier_field else None
        summary = build_summary(
            call_id=self.call_id,
            reason=reason,
            context=context.fields if context else {},
            known_caller=bool(context and context.known_caller),
            collected=self._collected,
            actions=self._actions,
            last_caller_text=self._last_text,
            intent=reply.intent,
            tier=str(tier) if tier else None,
            not_understood=2 if reason is HandoffReason.MISUNDERSTANDING else 0,
            dashboard_url=self.agent.dashboard_url,
        )
        reply.data["handoff"] = summary.safe_dict()
        reply.pii["handoff_summary"] = summary.to_dict()
        reply.pii["handoff_whisper"] = summary.whisper_text()
        if self.agent.outbox is not None:
            key = f"{self.call_id}:t{self._turns}:handoff_summary"
            write = CRMWrite(key, self.call_id, WriteAction.HANDOFF_SUMMARY, summary.to_dict())
            state = json.dumps({"handoff": summary.safe_dict()})
            try:
                # A blocking database call: off the event loop (crm/relay.py rule 5).
                await asyncio.to_thread(
                    self.agent.outbox.record, self.call_id, state, [write], self.agent.clock.wall()
                )
            except StoreError as exc:
                log.warning("handoff summary not recorded: %s", exc)
        return reply
