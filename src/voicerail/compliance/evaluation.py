"""Evaluation of each call from its events, sampling for human QA, and the review sheet.

Rules:

1. A call is evaluated from its stored events alone (``events/schema.md``), so
   any past call can be evaluated again: outcome, the intents recognized, task
   completion (an intent whose success label, from the agent's
   ``compliance.evaluation.success``, equals the call's outcome), turn latency at
   the caller's ear (``TTSFirstAudio.since_turn_end_s``), interruptions by the
   caller (``BargeIn``), silences (``Reprompted``), misunderstandings (flow
   decisions ``not_understood``), output-guard hits, whether the AI was
   disclosed at the start, and the consent decision.
2. Sampling for human QA (:func:`sample`): every failed call, every handoff,
   every call with a guard hit (each when the deployment's sampling says so), and
   ``percent_of_rest`` of the others, chosen by a hash of the call id so that
   the choice is the same on every run and every worker.
3. The review sheet is CSV with one row per sampled call and an empty ``label``
   column for the reviewer.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from voicerail.compliance.policy import SamplingPolicy
from voicerail.events.model import Event, EventKind


@dataclass
class CallEvaluation:
    """Rule 1 for one call (counts are per call; latencies in milliseconds)."""

    call_id: str
    outcome: str | None = None
    intents: list[str] = field(default_factory=list)
    completed: bool | None = None
    latency_ms: list[float] = field(default_factory=list)
    caller_interruptions: int = 0
    silences: int = 0
    misunderstandings: int = 0
    guard_hits: int = 0
    disclosed_at_start: bool = False
    consent: str | None = None
    handoff: bool = False

    @property
    def failed(self) -> bool:
        """The call failed, or its task was not completed."""
        return self.outcome == "failed" or self.completed is False


def evaluate_call(
    call_id: str, events: Iterable[Event], success: Mapping[str, str] | None = None
) -> CallEvaluation:
    """Rule 1: ``success`` maps an intent to the outcome that completes it."""
    result = CallEvaluation(call_id)
    for event in events:
        kind, data = event.kind, event.data
        if kind == EventKind.CALL_ENDED:
            result.outcome = event.outcome
        elif kind == EventKind.DIALOG_DECIDED:
            intent = data.get("intent")
            if intent and intent not in result.intents:
                result.intents.append(str(intent))
            if data.get("decision") == "not_understood":
                result.misunderstandings += 1
            result.handoff = result.handoff or bool(data.get("handoff"))
        elif kind == EventKind.TTS_FIRST_AUDIO and data.get("since_turn_end_s") is not None:
            result.latency_ms.append(round(float(data["since_turn_end_s"]) * 1000, 1))
        elif kind == EventKind.BARGE_IN:
            result.caller_interruptions += 1
        elif kind == EventKind.REPROMPTED:
            result.silences += 1
        elif kind == EventKind.GUARD_TRIGGERED:
            result.guard_hits += 1
        elif kind == EventKind.DISCLOSURE_GIVEN and data.get("when") == "start":
            result.disclosed_at_start = True
        elif kind == EventKind.CONSENT_RECORDED:
            result.consent = str(data.get("decision"))
        elif kind == EventKind.HANDOFF_REQUESTED:
            result.handoff = True
    goals = [success[i] for i in result.intents if success and i in success]
    if goals:
        result.completed = result.outcome in goals
    return result


def _share(call_id: str) -> float:
    """A stable number in [0, 100) from the call id."""
    digest = hashlib.sha256(call_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * 100


def sample(
    evaluations: Sequence[CallEvaluation], rules: SamplingPolicy
) -> list[tuple[CallEvaluation, str]]:
    """Rule 2: the calls to review, each with why."""
    chosen: list[tuple[CallEvaluation, str]] = []
    for ev in evaluations:
        if rules.failed and ev.failed:
            chosen.append((ev, "failed"))
        elif rules.handoffs and ev.handoff:
            chosen.append((ev, "handoff"))
        elif rules.guard_hits and ev.guard_hits:
            chosen.append((ev, "guard_hit"))
        elif _share(ev.call_id) < rules.percent_of_rest:
            chosen.append((ev, "random"))
    return chosen


COLUMNS = (
    "call_id", "reason", "outcome", "intents", "completed", "latency_ms_max",
    "caller_interruptions", "silences", "misunderstandings", "guard_hits",
    "disclosed_at_start", "consent", "label",
)  # fmt: skip


def review_sheet(sampled: Sequence[tuple[CallEvaluation, str]]) -> str:
    """Rule 3: the CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for ev, reason in sampled:
        writer.writerow(
            [ev.call_id, reason, ev.outcome or "", " ".join(ev.intents),
             "" if ev.completed is None else ev.completed,
             max(ev.latency_ms) if ev.latency_ms else "", ev.caller_interruptions,
             ev.silences, ev.misunderstandings, ev.guard_hits, ev.disclosed_at_start,
             ev.consent or "", ""]
        )  # fmt: skip
    return out.getvalue()
