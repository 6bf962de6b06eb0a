"""The flow engine: the nodes of an agent file, slot filling, explicit confirmation, recovery.

(Just over 500 lines: the decision steps of rule 2 read the same per-call state;
the phrase-cache and snapshot hooks pushed it over. The next split is the
keypad and silence handlers into their own module.)

Rules kept here (the file's schema is in :mod:`voicerail.dialog.flow_config`):

1. One :class:`FlowAgent` per agent file holds only read-only things shared by
   calls (spec, intent embeddings, booking store); every call has its own
   :class:`FlowDialog` and :class:`CallState`. Nothing crosses calls.
2. A caller turn is decided in this order; the first that applies wins:
   a. a handoff or answer intent scoring at least ``thresholds.preempt`` and
      best of all intents ("can I talk to a person?", "are you open Saturday?");
   b. at a confirmation: changed slot values (a correction: confirm again),
      then yes (run the action) or no (forget the node's slots and ask again);
   c. slot values for the current node, all of them at once, so that "Tuesday at
      3pm, my name is Maria Lopez" leaves only what is still missing to ask;
   d. the best of the node's intent transitions, the routes and the global
      intents (handoff, answers) at ``thresholds.intent``; a route enters its
      node with the same sentence, so its slot values are kept;
   e. the node's ``yes``/``no`` transitions;
   f. otherwise a misunderstanding: say so and ask again; after
      ``max_misunderstandings`` in a row, hand off. Any other outcome resets
      the count.
3. An answer (hours, "are you a robot?") is followed by the pending question,
   so the flow resumes where it was. "robot" is always answered, by default
   with the disclosure.
4. Actions (``flow_actions``) are the only writes, each with an idempotency
   key, so a replayed turn writes nothing new. A failed store hands off to a
   human ("store_failed").
5. Decisions run on the caller's task, after the one ``await`` (the embedding,
   in a worker thread): a cancelled turn (barge-in) leaves the state untouched.
6. Keys: ``keypad.handoff`` hands off; ``keypad.yes``/``no`` answer a
   confirmation or a node's yes/no transition; other keys are misunderstandings.
7. A confirmation the caller did not hear to its end (barge-in, see
   :meth:`FlowDialog.on_agent_heard`) is asked again before a "yes" counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from voicerail.compliance.pci import CardToken
from voicerail.dialog import flow_actions as actions
from voicerail.dialog import slots as extractors
from voicerail.dialog.base import TEXT_NOT_KEPT, AgentReply
from voicerail.dialog.bookings import Bookings
from voicerail.dialog.flow_actions import SlotValue
from voicerail.dialog.flow_config import (
    LOOKUP_ACTIONS,
    NO,
    YES,
    AgentSpec,
    NodeSpec,
    load_agent_spec,
)
from voicerail.dialog.flow_state import CONFIRM, CallState, from_snapshot, to_snapshot
from voicerail.dialog.nlu import Embedder, IntentClassifier
from voicerail.errors import StoreError
from voicerail.events.model import Outcome

_MAX_HOPS = 16  # next-links followed in one turn; the loader refuses cycles anyway


@dataclass
class _Turn:
    """The reply being built while one decision walks through nodes."""

    decision: str
    parts: list[str] = field(default_factory=list)
    intent: str | None = None
    outcome: Outcome | None = None
    booking_id: str | None = None
    handoff: bool = False
    end_call: bool = False
    hops: int = 0
    data: dict[str, Any] = field(default_factory=dict)


class FlowAgent:
    """A loaded agent file; builds one :class:`FlowDialog` per call.

    Args:
        spec: the validated agent file.
        bookings: the appointment store actions write to.
        embedder: sentence embedder for intents (the example phrases are embedded here).
        today: returns the caller's local date (injected; tests pass a fixed day).
    """

    def __init__(
        self,
        spec: AgentSpec,
        *,
        bookings: Bookings,
        embedder: Embedder,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.bookings = bookings
        self.today = today
        self.classifier = IntentClassifier(
            embedder,
            {name: intent.examples for name, intent in spec.intents.items()},
            spec.thresholds.intent,
            keywords={name: intent.keywords for name, intent in spec.intents.items()},
        )
        self.global_intents = frozenset({*spec.handoff.intents, *spec.answers, "robot"})
        extractors.warm_up()

    def new_dialog(self, call_id: str) -> FlowDialog:
        """A fresh conversation for ``call_id``."""
        return FlowDialog(self, call_id)

    def fixed_texts(self) -> list[str]:
        """Every template with the agent's own fields filled in (disclosure, name);
        caller-dependent placeholders stay as ``{slot}``. The phrase cache
        synthesizes the sentences of these that have none left."""
        values = _Keep(disclosure=self.spec.disclosure, agent=self.spec.name)
        return [text.format_map(values) for _, text in self.spec.template_texts()]


class _Keep(dict[str, str]):
    """Leaves unknown placeholders as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class FlowDialog:
    """One call's conversation with a :class:`FlowAgent` (see the module rules)."""

    def __init__(self, agent: FlowAgent, call_id: str) -> None:
        self.agent = agent
        self.spec = agent.spec
        self.call_id = call_id
        self.state = CallState(node=agent.spec.start)

    def snapshot(self, *, free_text: bool = True) -> dict[str, Any]:
        """The dialog's state, slots included, as JSON-ready data (``state/``);
        ``free_text`` False: the caller's words in the history are not kept (no
        recording consent), the slots the call needs are."""
        body = to_snapshot(self.state)
        if not free_text:
            body["history"] = [
                [role, TEXT_NOT_KEPT if role == "user" else text] for role, text in body["history"]
            ]
        return body

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Carry on from a :meth:`snapshot` taken on another worker (``state/``).

        Raises:
            StoreError: ``snapshot`` is not this agent's (unreadable, or an unknown node).
        """
        try:
            state = from_snapshot(snapshot)
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"call {self.call_id}: unreadable dialog snapshot: {exc}") from None
        if state.node not in self.spec.nodes:
            raise StoreError(f"call {self.call_id}: snapshot names unknown node {state.node!r}")
        self.state = state

    async def resume(self) -> AgentReply:
        """The first reply of a resumed call: the apology, what was gathered so far,
        and the pending question ("Sorry, I lost you for a moment. So far I have
        Tuesday at 3 PM for Maria Lopez. Shall I book it?")."""
        parts = [self.spec.messages.resumed]
        gathered = self._recap()
        if gathered:
            parts.append(f"So far I have {gathered}.")
        parts.append(self._pending_prompt())
        return self._finish(_Turn("resumed", parts=parts))

    def _recap(self) -> str:
        """The current node's filled slots, spoken: days and times first ("Tuesday,
        December 8 at 3 PM"), then the other values after "for"."""
        node = self._node()
        names = [n for n in (*node.collect, *node.optional) if n in self.state.slots]
        values = [self.state.slots[n] for n in names]
        when = " at ".join(_spoken(v) for v in values if isinstance(v, date | time))
        who = " ".join(_spoken(v) for v in values if not isinstance(v, date | time))
        return " for ".join(part for part in (when, who) if part)

    # -- the Dialog interface --------------------------------------------------------

    async def start(self) -> AgentReply:
        """The greeting, with the disclosure in it (flow_config rule 1)."""
        turn = _Turn("greeting", parts=[self._format(self.spec.greeting)])
        node = self._node()
        if node.collect:
            self._progress(turn)
        return self._finish(turn)

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        """Decide the reply to one caller turn (rule 2)."""
        if self.state.ended:
            return AgentReply(text="", end_call=True, node=self.state.node)
        self.state.history.append(("user", text))
        if not text.strip():
            return self._finish(self._not_understood("empty"))
        # CPU work off the event loop; the decision itself runs after it (rule 5).
        scores = await asyncio.to_thread(self.agent.classifier.scores, text)
        turn = self._decide(text, scores)
        if turn.decision != "not_understood" and not turn.handoff:
            self.state.misunderstandings = 0
        if confidence is not None:
            turn.data["stt_confidence"] = round(confidence, 3)
        return self._finish(turn)

    async def on_dtmf(self, digits: str) -> AgentReply:
        """React to keypad digits (rule 6)."""
        if self.state.ended:
            return AgentReply(text="", end_call=True, node=self.state.node)
        keypad = self.spec.keypad
        self.state.history.append(("user", f"<dtmf {digits}>"))
        if digits == keypad.handoff:
            return self._finish(self._handoff("keypad"))
        answer = True if digits == keypad.yes else False if digits == keypad.no else None
        turn: _Turn | None = None
        if answer is not None and self.state.awaiting == CONFIRM:
            turn = self._on_confirm(answer)
        elif answer is not None and (YES if answer else NO) in self._node().transitions:
            turn = self._go(self._node().transitions[YES if answer else NO], _Turn("keypad"))
        if turn is None:
            return self._finish(self._not_understood("keypad"))
        self.state.misunderstandings = 0
        return self._finish(turn)

    async def on_card_captured(self, card: CardToken) -> AgentReply:
        """A PCI pause's result (``compliance/dialog.py`` rule 2): the node's "yes"
        transition when the card was accepted, its "no" transition otherwise."""
        answer = YES if card.accepted else NO
        self.state.history.append(("user", f"<card {'accepted' if card.accepted else 'refused'}>"))
        transitions = self._node().transitions
        if answer not in transitions:
            return self._finish(self._not_understood("card"))
        self.state.misunderstandings = 0
        return self._finish(self._go(transitions[answer], _Turn("card")))

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        """Ask again with the pending question, or say goodbye when ``final``."""
        messages = self.spec.messages
        if final:
            self.state.ended = True
            turn = _Turn("silence_goodbye", parts=[messages.silence_goodbye], end_call=True)
        else:
            turn = _Turn("silence", parts=[messages.silence_reprompt, self._pending_prompt()])
        turn.data["silences"] = count
        return self._finish(turn)

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        """Keep in the history only what the caller heard of the last reply (rule 7)."""
        history = self.state.history
        for index in range(len(history) - 1, -1, -1):
            role, text = history[index]
            if role == "agent" and _squeezed(text) == _squeezed(full_text):
                history[index] = ("agent", heard_text)
                break
        if self.state.awaiting == CONFIRM:
            heard = _squeezed(self._pending_prompt()) in _squeezed(heard_text)
            self.state.confirm_heard = heard

    # -- decisions (rule 2) ------------------------------------------------------------

    def _decide(self, text: str, scores: dict[str, float]) -> _Turn:
        spec, state, node = self.spec, self.state, self._node()
        thresholds = spec.thresholds
        best = max(scores, key=lambda name: scores[name])
        if best in self.agent.global_intents and scores[best] >= thresholds.preempt:
            return self._global(best, scores[best])
        values = self._extract(text)
        relevant = {k: v for k, v in values.items() if k in node.collect or k in node.optional}
        self._keep_values({k: v for k, v in values.items() if k not in relevant})
        if state.awaiting == CONFIRM:
            turn = self._at_confirmation(text, relevant)
            if turn is not None:
                return turn
        elif relevant:
            state.slots.update(relevant)
            return self._progress(_Turn("slots", data={"slots_filled": sorted(relevant)}))
        candidates = [n for n in node.transitions if n in scores]
        candidates += [*spec.routes, *self.agent.global_intents]
        intent = max(candidates, key=lambda name: scores[name], default=None)
        if intent is not None and scores[intent] >= thresholds.intent:
            if intent in node.transitions or intent in spec.routes:
                target = node.transitions.get(intent) or spec.routes[intent]
                score = round(scores[intent], 3)
                turn = _Turn("route", intent=intent, data={"intent_score": score})
                if target == state.node and node.collect:
                    return self._progress(turn)  # already doing it: keep what was said
                return self._go(target, turn, text=text)
            return self._global(intent, scores[intent])
        answer = extractors.extract_yes_no(text)
        if answer is not None and (YES if answer else NO) in node.transitions:
            return self._go(node.transitions[YES if answer else NO], _Turn("yes_no"))
        return self._not_understood("no_match", best_score=scores[best])

    def _at_confirmation(self, text: str, values: dict[str, SlotValue]) -> _Turn | None:
        changed = {k: v for k, v in values.items() if self.state.slots.get(k) != v}
        if changed:
            self.state.slots.update(changed)
            self.state.target = None
            return self._progress(_Turn("correction", data={"slots_filled": sorted(changed)}))
        answer = extractors.extract_yes_no(text)
        return None if answer is None else self._on_confirm(answer)

    def _on_confirm(self, yes: bool) -> _Turn:
        node = self._node()
        if yes and not self.state.confirm_heard:
            self.state.confirm_heard = True
            return _Turn("confirm_again", parts=[self._pending_prompt()])
        if yes:
            return self._run_action(_Turn("confirmed"))
        for name in (*node.collect, *node.optional):
            if not self.spec.slots[name].keep:
                self.state.slots.pop(name, None)
        self.state.target, self.state.awaiting = None, None
        if all(name in self.state.slots for name in node.collect):
            text = node.declined or self.spec.messages.declined
            return self._go(node.next, _Turn("declined", parts=[self._format(text)]))
        return self._progress(_Turn("declined", parts=[self.spec.messages.declined]))

    def _global(self, intent: str, score: float) -> _Turn:
        if intent in self.spec.handoff.intents:
            return self._handoff("requested", intent=intent)
        answer = self.spec.answers.get(intent, "{disclosure}")  # rule 3
        parts = [self._format(answer), self._pending_prompt()]
        return _Turn("answer", parts=parts, intent=intent, data={"intent_score": round(score, 3)})

    # -- moving through nodes ----------------------------------------------------------

    def _go(self, target: str | None, turn: _Turn, *, text: str | None = None) -> _Turn:
        """Enter ``target`` (fresh task: its non-kept slots are forgotten) and go on."""
        if target is None:  # a node with an action and end_call but no next
            self.state.ended, turn.end_call = True, True
            return turn
        turn.hops += 1
        node = self.spec.nodes[target]
        state = self.state
        state.node, state.awaiting, state.target = target, None, None
        for name in (*node.collect, *node.optional):
            if not self.spec.slots[name].keep:
                state.slots.pop(name, None)
        if text is not None:
            values = self._extract(text)
            state.slots.update(
                {k: v for k, v in values.items() if k in node.collect or k in node.optional}
            )
        if node.say:
            turn.parts.append(self._format(node.say))
        return self._progress(turn)

    def _progress(self, turn: _Turn) -> _Turn:
        """Ask what the current node still needs, confirm, act, or move on."""
        node, state = self._node(), self.state
        if node.action in LOOKUP_ACTIONS and state.target is None and self._identified(node):
            try:
                today = self.agent.today()
                state.target = actions.find_target(
                    self.agent.bookings, node.action, self._by_type(node), today
                )
            except StoreError:
                return self._handoff("store_failed")
            if state.target is None:
                turn.data["found"] = False
                turn.parts.append(self._format(node.not_found))
                return self._go(node.next, turn)
        missing = [name for name in node.collect if name not in state.slots]
        if missing:
            state.awaiting = missing[0]
            turn.parts.append(self._slot_prompt(missing[0]))
            return turn
        if node.action is not None:
            if node.confirm:
                state.awaiting, state.confirm_heard = CONFIRM, True
                turn.parts.append(self._format(node.confirm))
                return turn
            return self._run_action(turn)
        state.awaiting = None
        if node.end_call:
            state.ended, turn.end_call = True, True
        elif node.prompt:
            turn.parts.append(self._format(node.prompt))
        elif node.next is not None and turn.hops < _MAX_HOPS:
            return self._go(node.next, turn)
        return turn

    def _identified(self, node: NodeSpec) -> bool:
        """The slots that identify the booking to change are filled."""
        wanted = LOOKUP_ACTIONS[node.action or ""]
        slots = self.spec.slots
        return all(n in self.state.slots for n in node.collect if slots[n].type in wanted)

    def _run_action(self, turn: _Turn) -> _Turn:
        node, state = self._node(), self.state
        action = node.action or ""
        count = state.actions_done.get(action, 0) + 1
        key = actions.idempotency_key(self.call_id, action, count)
        try:
            booking = actions.run_action(
                self.agent.bookings,
                action,
                call_id=self.call_id,
                key=key,
                values=self._by_type(node),
                target=state.target,
            )
        except StoreError:
            return self._handoff("store_failed")
        turn.data.update(action=action, found=booking is not None)
        if booking is None:
            turn.parts.append(self._format(node.not_found))
            return self._go(node.next, turn)
        state.actions_done[action] = count
        turn.data["idempotency_key"] = key
        turn.outcome, turn.booking_id = Outcome.COMPLETED, booking.booking_id
        turn.parts.append(self._format(node.done or "", booking_id=booking.booking_id))
        state.target = None
        return self._go(node.next, turn)

    def _handoff(self, reason: str, *, intent: str | None = None) -> _Turn:
        self.state.ended = True
        return _Turn(
            "handoff",
            parts=[self._format(self.spec.handoff.text)],
            intent=intent,
            outcome=Outcome.HANDOFF,
            handoff=True,
            end_call=True,
            data={"handoff_reason": reason},
        )

    def _not_understood(self, why: str, *, best_score: float | None = None) -> _Turn:
        self.state.misunderstandings += 1
        count = self.state.misunderstandings
        if count >= self.spec.max_misunderstandings:
            turn = self._handoff("misunderstood")
        else:
            parts = [self.spec.messages.not_understood, self._pending_prompt()]
            turn = _Turn("not_understood", parts=parts)
        turn.data.update(misunderstandings=count, not_understood=why)
        if best_score is not None:
            turn.data["best_score"] = round(best_score, 3)
        return turn

    # -- helpers -----------------------------------------------------------------------

    def _node(self) -> NodeSpec:
        return self.spec.nodes[self.state.node]

    def _extract(self, text: str) -> dict[str, SlotValue]:
        """Every slot value ``text`` holds, by slot name."""
        today = self.agent.today()
        asked = self.state.awaiting
        values: dict[str, SlotValue] = {}
        for name, slot in self.spec.slots.items():
            value: SlotValue | None
            if slot.type == "day":
                value = extractors.extract_day(text, today)
            elif slot.type == "time":
                value = extractors.extract_time(text)
            else:
                value = extractors.extract_name(text, asked=asked == name)
            if value is not None:
                values[name] = value
        return values

    def _keep_values(self, values: dict[str, SlotValue]) -> None:
        """Remember kept slots (the caller's name) whenever they are said."""
        for name, value in values.items():
            if self.spec.slots[name].keep:
                self.state.slots[name] = value

    def _by_type(self, node: NodeSpec) -> dict[str, SlotValue]:
        return {
            self.spec.slots[name].type: self.state.slots[name]
            for name in (*node.collect, *node.optional)
            if name in self.state.slots
        }

    def _pending_prompt(self) -> str:
        awaiting, node = self.state.awaiting, self._node()
        if awaiting == CONFIRM:
            return self._format(node.confirm or "")
        if awaiting is not None:
            return self._slot_prompt(awaiting)
        return self._format(node.prompt or "")

    def _slot_prompt(self, name: str) -> str:
        return self._format(self._node().ask.get(name) or self.spec.slots[name].prompt)

    def _format(self, template: str, **extra: str) -> str:
        values = _Blanks({k: _spoken(v) for k, v in self.state.slots.items()})
        target = self.state.target
        if target is not None:
            values.update(booking_day=_spoken(target.day), booking_time=_spoken(target.time))
        values.update(disclosure=self.spec.disclosure, agent=self.spec.name, **extra)
        return template.format_map(values)

    def _finish(self, turn: _Turn) -> AgentReply:
        text = " ".join(part.strip() for part in turn.parts if part and part.strip())
        self.state.history.append(("agent", text))
        data = {
            "decision": turn.decision,
            "awaiting": self.state.awaiting,
            "misunderstandings": self.state.misunderstandings,
            **turn.data,
        }
        pii = {name: _spoken(value) for name, value in self.state.slots.items()}
        return AgentReply(
            text=text,
            end_call=turn.end_call,
            handoff=turn.handoff,
            outcome=turn.outcome,
            booking_id=turn.booking_id,
            intent=turn.intent,
            node=self.state.node,
            data=data,
            pii=pii,
        )


class _Blanks(dict[str, str]):
    """Template values where a slot not yet filled reads as an empty string."""

    def __missing__(self, key: str) -> str:
        return ""


def _squeezed(text: str) -> str:
    """``text`` with every run of whitespace as one space (the driver re-joins sentences)."""
    return " ".join(text.split())


def _spoken(value: SlotValue) -> str:
    if isinstance(value, date):
        return extractors.format_day(value)
    if isinstance(value, time):
        return extractors.format_time(value)
    return value


def load_agent(
    path: str | Path,
    *,
    bookings: Bookings,
    embedder: Embedder | None = None,
    today: Callable[[], date] | None = None,
) -> FlowAgent:
    """Load an agent file into a :class:`FlowAgent` (the call driver's ``DialogFactory``).

    Args:
        path: the agent YAML file.
        bookings: the appointment store its actions write to.
        embedder: sentence embedder (default: the packaged MiniLM, loaded once
            per process).
        today: returns the caller's local date (default: :meth:`date.today`).

    Raises:
        ConfigError: the file is invalid (names the file and field), or the
            default embedding model is not installed.
    """
    spec = load_agent_spec(path)
    if embedder is None:
        from voicerail.dialog.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder()
    return FlowAgent(spec, bookings=bookings, embedder=embedder, today=today or date.today)
