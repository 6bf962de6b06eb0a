"""The compliance wrapper around any agent: PCI pause, redaction, disclosure, consent, guard.

Wraps a :class:`~voicerail.dialog.base.DialogFactory` (outermost, so that every
wrapper and dialog inside sees only what may be seen). The call driver reaches
it through three hooks, all synchronous (the third is ``screen_event``, rule 6):

- ``receive_dtmf(key)`` for each keypad key, before the key is recorded or
  delivered: outside the pause the key passes; during it the key goes into the
  card entry and the driver delivers :data:`PCI_KEY` instead (pci.py rule 1).
- ``screen_transcript(text)`` for each final transcript: returns the text to
  record (events, call state) and the text for the dialog (pci.py rule 3,
  redact.py).

Rules:

1. The pause starts when a reply asks for a card: its ``node`` is one of the
   policy's ``pci.nodes`` (flow agents) or its ``data["pci"]`` is ``"start"``
   (the LLM agent's ``collect_payment`` tool).
2. A finished entry is tokenized; an invalid number is asked again up to
   ``pci.max_attempts``; then the pause ends and the inner dialog hears the
   result through ``on_card_captured(card)`` when it (or a dialog it wraps) has
   one, else as a caller turn naming only the token and the last four digits.
3. Speech during the pause is not passed on (it is redacted anyway): the caller
   hears the prompt again; a second utterance ends the pause unpaid and goes to
   the inner dialog. A silence with digits keyed finishes the entry.
4. Everything else is passed through, including attributes the driver looks
   for (``caller_known``, ``snapshot``, ``on_call_ended``).
5. Disclosure, recording consent and the output guard (``conduct.py``) run on
   every reply the inner dialog makes; without consent no free text is kept.
6. ``screen_event(event)``, the driver's third hook, runs on every event before
   it is stored: the free-text ``pii`` values (what the caller and the agent
   said, :data:`_FREE_TEXT`) are redacted (``redact.py``), and so is every name
   the dialog collected in this call (a reply's ``pii`` keys with "name" in
   them), which no pattern would find in "So that's Monday for Ada Lovelace".
   The slot values themselves stay in their own ``pii`` keys: the dashboard's
   marked field, removed by retention and erasure. While the dialog is asking
   for a name (a flow's pending slot of type ``name``, ``data["awaiting"]``, or
   a reply that asks "your name?"), the next transcript is screened by
   ``redact.py`` rule 5 too, so a bare "Ada Lovelace." is not recorded.
7. A call resumed in another stream (``state/resume.py``) keeps the wrapper's
   state: it travels in the inner dialog's snapshot under :data:`SNAPSHOT_KEY`
   (the pause, its attempts, the names of rule 6, ``conduct.py`` rule 6). The
   keys of an entry in progress never leave the process (pci.py rule 1): a
   call resumed in the pause hears ``pci.resumed`` and the prompt, and keys
   the card again. Without recording consent the snapshot keeps no caller
   words (``free_text=False`` to the inner dialog) and says so with
   ``"free_text": false``, so the state recorder keeps no turn texts either
   (``state/recorder.py`` rule 4).
8. With ``pci.capture: twilio_pay`` a reply that asks for a card starts no
   keypad entry: it is marked ``data["pci"] = "twilio_pay"``, the driver ends
   the stream once it is heard (the call goes on), and ``compliance/pay_http.py``
   takes the call through Twilio's ``<Pay>``. Its result comes back in the
   snapshot (:func:`with_pay_result`), and :meth:`CompliantDialog.resume`
   hands it to the inner dialog as a keyed card's would be (rule 2).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from voicerail.clock import Clock, SystemClock
from voicerail.compliance.conduct import CallConduct
from voicerail.compliance.pci import CardEntry, CardToken, LocalTokenizer, Tokenizer
from voicerail.compliance.pci import redact_spoken_card as _redact_card
from voicerail.compliance.policy import CompliancePolicy
from voicerail.compliance.redact import NAME_MARKER, redact_expected_name, redact_personal
from voicerail.dialog.base import (
    TEXT_NOT_KEPT,
    AgentReply,
    Dialog,
    DialogFactory,
    snapshot_with,
)
from voicerail.errors import StoreError
from voicerail.events.model import Event

#: What the driver delivers to the dialog for a key the pause holds.
PCI_KEY = "pci"
#: The node name of the wrapper's own replies during the pause.
PAYMENT_NODE = "payment"
#: The ``pii`` keys of events that hold free text (what was said), rule 6.
_FREE_TEXT = frozenset(
    {"text", "agent_text", "heard_text", "full_text", "handoff_whisper", "blocked_text"}
)
#: What free text becomes without recording consent.
NOT_RETAINED = TEXT_NOT_KEPT
#: Where the wrapper's own state sits in the call's dialog snapshot (rule 7).
SNAPSHOT_KEY = "_compliance"
#: The snapshot's ``pay`` while the call is on its way to Twilio's ``<Pay>`` (rule 8).
PAY_PENDING = "pending"


@dataclass(frozen=True)
class KeyPress:
    """What to do with one keypad key.

    Attributes:
        deliver: what the turn-taking policy hands the dialog (the key, or
            :data:`PCI_KEY` during the pause).
        paused: the key went into a card entry: it must not be recorded.
    """

    deliver: str
    paused: bool


def plain_key(key: str) -> KeyPress:
    """A key outside any pause (dialogs without the wrapper)."""
    return KeyPress(key, False)


class CompliantAgent:
    """A dialog factory whose dialogs keep the agent's compliance policy.

    Args:
        inner: the agent (possibly already wrapped, e.g. by ``ContextualAgent``).
        policy: the agent file's ``compliance`` section.
        tokenizer: where keyed cards go; a :class:`LocalTokenizer` when None.
        record: stores the wrapper's own events (the event store's ``append``);
            None: not recorded.
        clock: those events' clock.
    """

    def __init__(
        self,
        inner: DialogFactory,
        policy: CompliancePolicy,
        tokenizer: Tokenizer | None = None,
        *,
        record: Callable[[Event], Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.policy = policy
        self.tokenizer = tokenizer or LocalTokenizer()
        self.record = record
        self.clock = clock or SystemClock()

    def fixed_texts(self) -> list[str]:
        """The inner agent's fixed texts and the pause's prompts (the phrase cache's)."""
        inner: Callable[[], list[str]] = getattr(self.inner, "fixed_texts", list)
        policy = self.policy
        texts = [policy.pci.prompt, policy.pci.invalid, policy.pci.resumed, policy.disclosure.text]
        texts += [policy.guard.fallback, policy.consent.accepted, policy.consent.declined]
        return [*inner(), *texts, *([policy.disclosure.at_end] if policy.disclosure.at_end else [])]

    def new_dialog(self, call_id: str) -> CompliantDialog:
        """The inner agent's dialog for ``call_id``, wrapped."""
        return CompliantDialog(self, self.inner.new_dialog(call_id), call_id)


class CompliantDialog:
    """One call's wrapped dialog (rules 1-6)."""

    def __init__(self, agent: CompliantAgent, inner: Dialog, call_id: str = "") -> None:
        self.agent = agent
        self.inner = inner
        record = agent.record
        self.conduct = CallConduct(
            agent.policy,
            call_id,
            None if record is None else (lambda event: record(self.screen_event(event))),
            agent.clock,
        )
        self._entry: CardEntry | None = None  # not None: the pause is on
        self._attempts = 0
        self._spoken_in_pause = 0
        self._known: set[str] = set()  # names collected in this call (rule 6)
        self._asking_name = False  # the last reply asked for a name (rule 6)
        # Rule 8: None, "pending" (the call is going to <Pay>) or <Pay>'s result.
        self._pay: str | dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        # Rule 4; __getattr__ runs only for names this class lacks.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def paused(self) -> bool:
        """True while a card is being collected."""
        return self._entry is not None

    # -- driver hooks ----------------------------------------------------------

    def receive_dtmf(self, key: str) -> KeyPress:
        """One keypad key, before it is recorded or delivered (never raises)."""
        if self._pay == PAY_PENDING:
            # Rule 8: the caller was told to key the card (for <Pay>) and may start
            # before the stream ends, or after barging in on the request: no key of
            # theirs reaches the dialog until the call is back from <Pay>.
            return KeyPress(PCI_KEY, True)
        if self._entry is None:
            return KeyPress(key, False)
        self._entry.receive_key(key)
        return KeyPress(PCI_KEY, True)

    def screen_transcript(self, text: str) -> tuple[str, str]:
        """``(to_record, for_dialog)`` for one final transcript (pci.py rule 3, redact.py)."""
        safe = _redact_card(text, paused=self.paused)
        redaction = self.agent.policy.redaction
        redacted = redact_personal(safe)
        if self._asking_name:
            redacted = redact_expected_name(redacted)
        recorded = redacted if redaction.transcripts else safe
        if not self.conduct.retain:  # no recording consent (conduct.py rule 2)
            recorded = NOT_RETAINED
        return recorded, (redacted if redaction.llm else safe)

    def screen_event(self, event: Event) -> Event:
        """Rule 6: ``event`` with personal data redacted from its free-text ``pii``
        (all of it without recording consent, conduct.py rule 2)."""
        retain = self.conduct.retain
        if retain and not self.agent.policy.redaction.transcripts:
            return event
        pii = dict(event.pii)
        changed = False
        for key in _FREE_TEXT.intersection(pii):
            value = pii[key]
            if isinstance(value, str):
                clean = self._redact_known(redact_personal(_redact_card(value, paused=False)))
                if not retain:
                    clean = NOT_RETAINED
                changed = changed or clean != value
                pii[key] = clean
        return replace(event, pii=pii) if changed else event

    def _redact_known(self, text: str) -> str:
        for value in self._known:
            text = re.sub(re.escape(value), NAME_MARKER, text, flags=re.IGNORECASE)
        return text

    def _learn(self, reply: AgentReply) -> None:
        """Remember the names the dialog collected (its ``pii``), for rule 6."""
        for key, value in reply.pii.items():
            if isinstance(value, str) and len(value) >= 3 and "name" in key.lower():
                self._known.add(value)

    # -- the Dialog interface ----------------------------------------------------

    async def start(self) -> AgentReply:
        return self._after(self.conduct.start(await self.inner.start()), first=True)

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        if self._entry is not None:
            self._spoken_in_pause += 1
            if self._spoken_in_pause < 2:
                return self._pause_reply(self.agent.policy.pci.prompt, "spoken")
            self._end_pause()
        consent = self.conduct.answer_consent(text)
        if consent is not None:
            return consent
        return self._after(await self.inner.on_user_turn(text, confidence), text)

    async def on_dtmf(self, digits: str) -> AgentReply:
        if digits != PCI_KEY:
            return self._after(await self.inner.on_dtmf(digits))
        entry = self._entry
        if entry is None or not entry.finished:
            return self._pause_reply("", "keying")
        return await self._finish_entry(entry)

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        entry = self._entry
        if entry is not None and not final:
            if entry.num_digits:
                return await self._finish_entry(entry)
            return self._pause_reply(self.agent.policy.pci.prompt, "silence")
        if final:
            self._end_pause()
        return self._after(await self.inner.on_silence(count, final))

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        self.inner.on_agent_heard(heard_text, full_text)

    # -- resume (rule 7) -----------------------------------------------------------

    def snapshot(self, *, free_text: bool = True) -> dict[str, Any]:
        """The inner dialog's snapshot with this wrapper's state (rule 7)."""
        inner = getattr(self.inner, "snapshot", None)
        retain = free_text and self.conduct.retain
        body = dict(snapshot_with(inner, free_text=retain)) if inner is not None else {}
        body[SNAPSHOT_KEY] = {
            "paused": self._entry is not None,
            "attempts": self._attempts,
            "spoken_in_pause": self._spoken_in_pause,
            "known": sorted(self._known) if retain else [],
            "conduct": self.conduct.snapshot(),
            "pay": self._pay,
            "asking_name": self._asking_name,
        }
        if not retain:
            body["free_text"] = False
        return body

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Carry on from :meth:`snapshot` (rule 7).

        Raises:
            StoreError: the inner dialog cannot be restored, or a snapshot is unreadable.
        """
        inner = getattr(self.inner, "restore", None)
        if inner is None:
            raise StoreError("this dialog cannot be restored")
        body = dict(snapshot)
        body.pop("free_text", None)
        own = body.pop(SNAPSHOT_KEY, None)
        if own is not None:
            try:
                self.conduct.restore(own["conduct"])
                paused, attempts = bool(own["paused"]), int(own["attempts"])
                spoken, known = int(own["spoken_in_pause"]), {str(n) for n in own["known"]}
                pay = own.get("pay")
                if pay is not None and pay != PAY_PENDING:
                    _card_of(pay)  # readable, or refused now rather than at resume
            except (KeyError, ValueError, TypeError) as exc:
                raise StoreError(f"unreadable compliance snapshot: {exc}") from None
            self._entry = CardEntry() if paused else None  # pci.py rule 1: keys never stored
            self._attempts, self._spoken_in_pause, self._known = attempts, spoken, known
            self._pay = pay
            self._asking_name = bool(own.get("asking_name", False))
        inner(body)

    async def resume(self) -> AgentReply:
        """A resumed call's first reply (rule 7): in the pause, ``pci.resumed`` and
        the prompt; else the inner dialog's recap, guarded (``conduct.py`` rule 6)."""
        pci = self.agent.policy.pci
        if self._entry is not None:
            return self._pause_reply(f"{pci.resumed} {pci.prompt}".strip(), "resumed")
        pay, self._pay = self._pay, None
        if isinstance(pay, dict):  # back from <Pay> (rule 8)
            return await self._deliver(_card_of(pay))
        resume: Callable[[], Awaitable[AgentReply]] | None = getattr(self.inner, "resume", None)
        if resume is None:
            return await self.start()
        reply = self.conduct.resumed(await resume())
        self._learn(reply)
        if reply.node in pci.nodes or reply.data.get("pci") == "start":
            return self._start_pause(reply)  # the break fell between the question and it
        return reply

    # -- the pause ---------------------------------------------------------------

    def _after(
        self, reply: AgentReply, caller_text: str | None = None, *, first: bool = False
    ) -> AgentReply:
        """Rule 1 (the pause starts when ``reply`` asks for a card) after the
        disclosure and the guard (``conduct.py``)."""
        self._learn(reply)
        self._asking_name = _asks_for_name(self.inner, reply)
        if not first:
            said = reply.text
            reply = self.conduct.after(reply, caller_text)
            if "guard" in reply.data:
                # The dialog's history holds what was said, not what it wanted to say
                # (an LLM would otherwise read its own claim back next turn).
                self.inner.on_agent_heard(reply.text, said)
        asks = reply.node in self.agent.policy.pci.nodes or reply.data.get("pci") == "start"
        if asks and self._entry is None:
            return self._start_pause(reply)
        return reply

    def _start_pause(self, reply: AgentReply) -> AgentReply:
        """Rule 1, or rule 8 when Twilio's ``<Pay>`` takes the card."""
        if self.agent.policy.pci.capture == "twilio_pay":
            self._pay = PAY_PENDING
            return replace(reply, data={**reply.data, "pci": "twilio_pay"})
        self._entry = CardEntry()
        self._attempts = 0
        self._spoken_in_pause = 0
        return replace(reply, data={**reply.data, "pci": "paused"})

    def _end_pause(self) -> None:
        self._entry = None
        self._spoken_in_pause = 0

    def _pause_reply(self, text: str, why: str) -> AgentReply:
        return AgentReply(text, node=PAYMENT_NODE, data={"pci": why})

    async def _finish_entry(self, entry: CardEntry) -> AgentReply:
        """Rule 2: tokenize; ask again, or hand the result to the inner dialog."""
        card = entry.take(self.agent.tokenizer)
        self._attempts += 1
        if not card.accepted and self._attempts < self.agent.policy.pci.max_attempts:
            self._entry = CardEntry()
            reply = self._pause_reply(self.agent.policy.pci.invalid, "invalid")
            return replace(reply, data={**reply.data, "card_digits": card.num_digits})
        self._end_pause()
        return await self._deliver(card)

    async def _deliver(self, card: CardToken) -> AgentReply:
        """Rule 2's end: the inner dialog hears the card's result."""
        reply = await _card_handler(self.inner)(card)
        data = {**reply.data, "pci": "captured" if card.accepted else "failed"}
        if card.accepted:
            data["card_token"] = card.token
        return self._after(replace(reply, data=data, pii={**reply.pii, "card_last4": card.last4}))


_ASKS_NAME = re.compile(
    r"\b(?:your|the caller's|the patient's)\s+(?:full\s+|first\s+|last\s+)?name\b[^.!?]*\?",
    re.IGNORECASE,
)


def _asks_for_name(inner: Any, reply: AgentReply) -> bool:
    """Rule 6: the reply leaves the dialog waiting for a name.

    A flow says which slot it waits for (``data["awaiting"]``, ``dialog/flows.py``);
    its type is read from the flow's spec. Any dialog (an LLM) whose reply asks
    "what is your name?" is taken at its word.
    """
    awaiting = reply.data.get("awaiting")
    if isinstance(awaiting, str):
        slots = getattr(getattr(inner, "spec", None), "slots", None)
        slot = slots.get(awaiting) if isinstance(slots, dict) else None
        kind = getattr(slot, "type", None)
        if kind == "name" or (kind is None and "name" in awaiting.lower()):
            return True
    return bool(_ASKS_NAME.search(reply.text))


def with_pay_result(snapshot: dict[str, Any], card: CardToken) -> dict[str, Any] | None:
    """Rule 8: a call's dialog snapshot with ``<Pay>``'s result in it, for its
    resume to deliver; None when the call is not waiting for one."""
    own = snapshot.get(SNAPSHOT_KEY)
    if not isinstance(own, dict) or own.get("pay") != PAY_PENDING:
        return None
    result = {"token": card.token, "last4": card.last4, "accepted": card.accepted}
    return {**snapshot, SNAPSHOT_KEY: {**own, "pay": result}}


def _card_of(result: dict[str, Any]) -> CardToken:
    """The :class:`CardToken` of a ``<Pay>`` result kept by :func:`with_pay_result`.

    Raises:
        KeyError, TypeError: ``result`` is not such a result.
    """
    token = str(result["token"])
    return CardToken(token, str(result["last4"]), 0, bool(result["accepted"]) and bool(token))


def card_sentence(card: CardToken) -> str:
    """How a dialog without ``on_card_captured`` hears the result (rule 2): never the PAN."""
    if card.accepted:
        return (
            f"(the caller keyed a card on the keypad: accepted, token {card.token}, "
            f"ending in {card.last4})"
        )
    return "(the caller keyed a card on the keypad: it was not a valid card number)"


def _card_handler(dialog: Any) -> Callable[[CardToken], Awaitable[AgentReply]]:
    """The innermost ``on_card_captured`` reachable through wrappers' ``inner``, else a
    caller turn with :func:`card_sentence` given to ``dialog``."""
    found: Any = dialog
    while found is not None:
        if callable(getattr(type(found), "on_card_captured", None)):
            return found.on_card_captured
        found = getattr(found, "inner", None)

    async def as_turn(card: CardToken) -> AgentReply:
        return await dialog.on_user_turn(card_sentence(card), None)

    return as_turn
