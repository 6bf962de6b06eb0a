"""One call's disclosure, recording consent and output guard, applied to each reply.

Used by :class:`~voicerail.compliance.dialog.CompliantDialog`; every decision is
recorded as an event through ``record`` (``DisclosureGiven``, ``ConsentRecorded``,
``OutputGuardTriggered``: ``events/schema.md``).

Rules:

1. The first reply discloses the AI (``disclosure.text`` is put first when it
   does not, guard.py rule 1); in ``notice`` mode it mentions recording (the
   notice is added when it does not); in ``opt_in`` mode it ends with the
   consent question.
2. Opt-in: the caller's next turn is the answer. A yes keeps transcripts and the
   caller hears ``accepted`` and the greeting's last sentence again; a no, or
   anything else (the caller went straight to their request), is no consent:
   from then on the call keeps no free text (:attr:`CallConduct.retain` is False);
   a no is answered with ``declined`` and the greeting's last sentence, anything
   else goes on to the dialog. Until the answer nothing is retained either.
3. Every reply passes the output guard (guard.py rule 4) before it is spoken: a
   claim to be human is replaced by the disclosure; a prohibited phrase by
   ``guard.fallback``. The reply keeps its other fields (end_call, handoff).
4. A turn that asks whether the agent is human gets a reply that discloses
   (the disclosure is put first when the dialog's reply does not).
5. A reply that ends the call (not a handoff) ends with ``disclosure.at_end`` when
   the agent has one (AB 3030).
6. A call resumed in another stream (``state/resume.py``) keeps its decisions:
   the disclosures given, the consent decision (a declined consent stays
   declined; a pending one is asked again) and the guard's hits
   (:meth:`CallConduct.snapshot`, :meth:`CallConduct.restore`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from voicerail.clock import Clock
from voicerail.compliance.guard import asks_if_human, check_reply, discloses_ai
from voicerail.compliance.policy import CompliancePolicy
from voicerail.dialog.base import AgentReply
from voicerail.events.model import Event, EventKind, Stage

_YES = re.compile(
    r"\b(?:yes|yeah|yep|sure|ok(?:ay)?|fine|go ahead|that's fine|of course|i agree)\b", re.I
)
_NO = re.compile(r"\b(?:no|nope|don't|do not|rather not|not okay|i object|decline)\b", re.I)
_RECORDING = re.compile(r"\brecord", re.IGNORECASE)
_LAST_SENTENCE = re.compile(r"[^.!?]+[.!?]*\s*$")


@dataclass
class ConductSummary:
    """What the call's conduct was, for the evaluation (``compliance/evaluation.py``).

    Attributes:
        disclosed_at_start: the first reply disclosed the AI.
        disclosures: times the AI was disclosed (start, asked, end).
        consent: ``none``, ``notified``, ``pending``, ``granted`` or ``declined``.
        guard_hits: rules the guard stopped, in order.
    """

    disclosed_at_start: bool = False
    disclosures: list[str] = field(default_factory=list)
    consent: str = "none"
    guard_hits: list[str] = field(default_factory=list)


class CallConduct:
    """Rules 1-5 for one call.

    Args:
        policy: the agent's compliance section.
        call_id: the call, for the events.
        record: stores one event (the event store's ``append``); None: not recorded.
        clock: the events' clock.
    """

    def __init__(
        self,
        policy: CompliancePolicy,
        call_id: str,
        record: Callable[[Event], Any] | None,
        clock: Clock,
    ) -> None:
        self.policy = policy
        self.call_id = call_id
        self._record = record
        self._clock = clock
        self._prohibited = policy.guard.patterns()
        self._resume = ""  # the greeting's question, asked again after consent
        self.summary = ConductSummary()

    @property
    def retain(self) -> bool:
        """Free text of this call may be kept (rule 2)."""
        return self.summary.consent not in ("pending", "declined")

    def snapshot(self) -> dict[str, Any]:
        """Rule 6: the call's decisions as JSON-ready data."""
        summary = self.summary
        return {
            "disclosed_at_start": summary.disclosed_at_start,
            "disclosures": list(summary.disclosures),
            "consent": summary.consent,
            "guard_hits": list(summary.guard_hits),
            "resume": self._resume,
        }

    def restore(self, body: dict[str, Any]) -> None:
        """Rule 6: the decisions of :meth:`snapshot`, recorded by an earlier stream
        (no event is recorded again).

        Raises:
            KeyError, ValueError, TypeError: ``body`` is not such a snapshot.
        """
        consent = str(body["consent"])
        if consent not in ("none", "notified", "pending", "granted", "declined"):
            raise ValueError(f"consent {consent!r}")
        self.summary = ConductSummary(
            disclosed_at_start=bool(body["disclosed_at_start"]),
            disclosures=[str(d) for d in body["disclosures"]],
            consent=consent,
            guard_hits=[str(h) for h in body["guard_hits"]],
        )
        self._resume = str(body["resume"])

    def resumed(self, reply: AgentReply) -> AgentReply:
        """Rules 3 and 6 on a resumed call's first reply: guarded, and a consent
        still pending is asked again."""
        reply = self.guarded(reply)
        if self.summary.consent == "pending":
            reply = replace(reply, text=f"{reply.text} {self.policy.consent.prompt}".strip())
        return reply

    def start(self, reply: AgentReply) -> AgentReply:
        """Rule 1 on the first reply (after the guard, rule 3)."""
        reply = self.guarded(reply)
        text = reply.text
        disclosure = self.policy.disclosure
        if disclosure.at_start:
            added = not discloses_ai(text)
            if added:
                text = f"{disclosure.text} {text}".strip()
            self.summary.disclosed_at_start = True
            self._disclosed("start", added)
        self._resume = _last_sentence(reply.text)
        consent = self.policy.consent
        if consent.mode == "notice":
            if not _RECORDING.search(text):
                text = f"{text} {consent.notice}".strip()
            self._consent("notice", "notified")
        elif consent.mode == "opt_in":
            text = f"{text} {consent.prompt}".strip()
            self.summary.consent = "pending"
        return replace(reply, text=text)

    def answer_consent(self, text: str) -> AgentReply | None:
        """Rule 2: the reply to a consent answer, or None to hand the turn to the dialog."""
        if self.summary.consent != "pending":
            return None
        consent = self.policy.consent
        if _YES.search(text) and not _NO.search(text):
            self._consent("opt_in", "granted")
            said = f"{consent.accepted} {self._resume}".strip()
            return AgentReply(said, node="consent", data={"consent": "granted"})
        self._consent("opt_in", "declined")
        if _NO.search(text):
            said = f"{consent.declined} {self._resume}".strip()
            return AgentReply(said, node="consent", data={"consent": "declined"})
        return None

    def after(self, reply: AgentReply, caller_text: str | None = None) -> AgentReply:
        """Rules 3-5 on a reply to a caller turn (``caller_text``), a key or a silence."""
        reply = self.guarded(reply)
        disclosure = self.policy.disclosure
        if disclosure.when_asked and caller_text and asks_if_human(caller_text):
            added = not discloses_ai(reply.text)
            if added:
                reply = replace(reply, text=f"{disclosure.text} {reply.text}".strip())
            self._disclosed("asked", added)
        if reply.end_call and not reply.handoff and disclosure.at_end:
            reply = replace(reply, text=f"{reply.text} {disclosure.at_end}".strip())
            self._disclosed("end", True)
        return reply

    def guarded(self, reply: AgentReply) -> AgentReply:
        """Rule 3."""
        hit = check_reply(reply.text, self._prohibited)
        if hit is None:
            return reply
        self.summary.guard_hits.append(hit.rule)
        self._emit(
            EventKind.GUARD_TRIGGERED,
            {"rule": hit.rule, "index": hit.index},
            pii={"blocked_text": reply.text},
        )
        text = self.policy.disclosure.text
        if hit.rule == "prohibited":
            text = self.policy.guard.fallback
        return replace(reply, text=text, data={**reply.data, "guard": hit.rule})

    def _disclosed(self, when: str, added: bool) -> None:
        self.summary.disclosures.append(when)
        self._emit(EventKind.DISCLOSURE_GIVEN, {"when": when, "added": added})

    def _consent(self, mode: str, decision: str) -> None:
        self.summary.consent = decision
        self._emit(EventKind.CONSENT_RECORDED, {"mode": mode, "decision": decision})

    def _emit(
        self, kind: EventKind, data: dict[str, Any], pii: dict[str, Any] | None = None
    ) -> None:
        if self._record is None:
            return
        event = Event(
            call_id=self.call_id,
            kind=kind,
            at_wall=self._clock.wall(),
            at_mono=self._clock.monotonic(),
            stage=Stage.DIALOG,
            data=data,
            pii=pii or {},
        )
        self._record(event)


def _last_sentence(text: str) -> str:
    match = _LAST_SENTENCE.search(text.strip())
    return match.group(0).strip() if match else ""
