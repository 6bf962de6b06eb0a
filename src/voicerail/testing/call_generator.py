"""Seeded timelines of simulated calls, for operations tests and benchmarks.

:func:`plan_calls` draws calls (start time, scenario, turns, outcome, every
provider attempt with its time, outcome and cost) from a seed; :func:`events_for`
turns one plan into the events the driver and router would have recorded. Tests
compute their expected figures from the plans, independently of the queries.

Scenarios (weights in :data:`SCENARIOS`):

* ``ok``: every attempt succeeds; outcome completed, abandoned or handoff.
* ``tts_recovered``: a TTS timeout on ``elevenlabs`` covered by ``piper``.
* ``hedge``: ``elevenlabs`` slow, a hedge on ``piper`` wins (``hedge_lost``).
* ``barge_in``: the caller interrupts; a TTS attempt is ``cancelled``.
* ``tts_failed``: ``elevenlabs`` times out with no fallback; the call fails.
* ``stt_failed``: ``deepgram`` answers 503; the call fails.
* ``llm_failed``: ``openai`` refuses (401, permanent); the call fails.
* ``recovered_then_llm_failed``: a recovered TTS timeout, then ``llm_failed``.
* ``protocol_error``: the media stream peer sends garbage; the call fails.
* ``unexplained``: the call fails with no failing event.
* ``in_progress``: the call has not ended.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import CallRecord

SCENARIOS: dict[str, float] = {
    "ok": 0.62,
    "tts_recovered": 0.08,
    "hedge": 0.04,
    "barge_in": 0.06,
    "tts_failed": 0.06,
    "stt_failed": 0.04,
    "llm_failed": 0.03,
    "recovered_then_llm_failed": 0.02,
    "protocol_error": 0.02,
    "unexplained": 0.01,
    "in_progress": 0.02,
}
FAILED = {
    "tts_failed",
    "stt_failed",
    "llm_failed",
    "recovered_then_llm_failed",
    "protocol_error",
    "unexplained",
}
TURN_S = 8.0


@dataclass(frozen=True)
class PlannedAttempt:
    """One provider attempt of a plan (``t_s`` after the call started)."""

    stage: str
    provider: str
    t_s: float
    latency_s: float
    outcome: str
    error_class: str | None
    number: int
    cost_usd: float | None
    hedged: bool = False


@dataclass(frozen=True)
class PlannedCall:
    """One simulated call: what happened, decided before any event is made."""

    call_id: str
    started_at: float
    scenario: str
    outcome: str | None
    turns: int
    attempts: tuple[PlannedAttempt, ...]
    ended_after_s: float | None

    @property
    def cost_usd(self) -> float:
        """The sum of every attempt's cost."""
        return sum(a.cost_usd or 0.0 for a in self.attempts)


def plan_calls(seed: int, num_calls: int, *, start_s: float, end_s: float) -> Iterator[PlannedCall]:
    """``num_calls`` plans with start times uniform in ``[start_s, end_s)``."""
    rng = random.Random(seed)
    names, weights = list(SCENARIOS), list(SCENARIOS.values())
    for index in range(num_calls):
        started = round(rng.uniform(start_s, end_s), 3)
        scenario = rng.choices(names, weights)[0]
        yield _plan(rng, f"sim_{seed}_{index:07d}", started, scenario)


def _cost(rng: random.Random, stage: str) -> float:
    low, high = {"stt": (0.001, 0.004), "llm": (0.0005, 0.003), "tts": (0.002, 0.012)}[stage]
    return round(rng.uniform(low, high), 6)


def _failure(stage: str, provider: str, t: float, latency: float, error: str) -> PlannedAttempt:
    return PlannedAttempt(stage, provider, t, latency, "error", error, 1, None)


def _plan(rng: random.Random, call_id: str, started: float, scenario: str) -> PlannedCall:
    turns = rng.randint(2, 4)
    fail_turn = rng.randint(1, turns) if scenario in FAILED else None
    attempts: list[PlannedAttempt] = []

    def ok(stage: str, provider: str, t: float, latency: float, number: int = 1) -> None:
        attempts.append(
            PlannedAttempt(stage, provider, t, latency, "ok", None, number, _cost(rng, stage))
        )

    ok("tts", "elevenlabs", 0.4, 0.15)  # the greeting
    last_turn = turns
    for turn in range(1, turns + 1):
        t0 = 2.0 + (turn - 1) * TURN_S
        failing = turn == fail_turn
        if failing and scenario == "stt_failed":
            attempts.append(_failure("stt", "deepgram", t0 + 1.8, 0.3, "transient"))
            last_turn = turn
            break
        ok("stt", "deepgram", t0 + 1.8, 0.3)
        if failing and scenario in ("llm_failed", "recovered_then_llm_failed"):
            attempts.append(_failure("llm", "openai", t0 + 2.3, 0.2, "permanent"))
            last_turn = turn
            break
        if failing and scenario in ("protocol_error", "unexplained"):
            last_turn = turn
            break
        ok("llm", "openai", t0 + 2.3, 0.4)
        recovered = scenario == "tts_recovered" and turn == 1
        recovered |= scenario == "recovered_then_llm_failed" and turn == 1 and fail_turn != 1
        if failing and scenario == "tts_failed":
            attempts.append(_failure("tts", "elevenlabs", t0 + 3.8, 1.2, "timeout"))
            last_turn = turn
            break
        if recovered:
            attempts.append(_failure("tts", "elevenlabs", t0 + 3.8, 1.2, "timeout"))
            ok("tts", "piper", t0 + 4.0, 0.1, number=2)
        elif scenario == "hedge" and turn == 1:
            won = PlannedAttempt(
                "tts", "piper", t0 + 3.2, 0.1, "ok", None, 2, _cost(rng, "tts"), True
            )
            lost = PlannedAttempt(
                "tts", "elevenlabs", t0 + 3.3, 0.9, "hedge_lost", None, 1, _cost(rng, "tts")
            )
            attempts += [won, lost]
        else:
            ok("tts", "elevenlabs", t0 + 2.6, 0.2)
        if scenario == "barge_in" and turn == 1:
            cut = PlannedAttempt("tts", "elevenlabs", t0 + 3.5, 0.2, "cancelled", None, 1, 0.001)
            attempts.append(cut)
    if scenario in FAILED:
        outcome: str | None = "failed"
    elif scenario == "in_progress":
        outcome = None
    else:
        outcome = rng.choices(["completed", "abandoned", "handoff"], [0.6, 0.25, 0.15])[0]
    ended = None if outcome is None else 2.0 + last_turn * TURN_S
    return PlannedCall(call_id, started, scenario, outcome, last_turn, tuple(attempts), ended)


Emit = Callable[..., None]


def events_for(plan: PlannedCall) -> tuple[CallRecord, list[Event]]:
    """The call row and the events (``seq`` in order) that ``plan`` describes."""
    events: list[Event] = []

    def add(kind: EventKind, t: float, stage: Stage | None, **fields: Any) -> None:
        at_wall, at_mono = plan.started_at + t, 100.0 + t
        events.append(Event(plan.call_id, kind, at_wall, at_mono, stage, seq=len(events), **fields))

    add(EventKind.CALL_STARTED, 0.0, Stage.TELEPHONY)
    add(
        EventKind.STREAM_STARTED,
        0.05,
        Stage.TELEPHONY,
        data={"encoding": "audio/x-mulaw"},
        pii={"call_sid": "CA" + plan.call_id},
    )
    add(
        EventKind.DIALOG_DECIDED,
        0.2,
        Stage.DIALOG,
        latency_s=0.01,
        data={"reason": "greeting"},
        pii={"agent_text": "Hello, this is the clinic."},
    )
    by_turn: dict[int, list[PlannedAttempt]] = {}
    for a in plan.attempts:
        turn = 0 if a.t_s < 2.0 else int((a.t_s - 2.0) // TURN_S) + 1
        by_turn.setdefault(turn, []).append(a)
    for turn in range(plan.turns + 1):
        t0 = 2.0 + (turn - 1) * TURN_S
        if turn:
            add(EventKind.USER_TURN_STARTED, t0, Stage.VAD)
            add(EventKind.USER_TURN_ENDED, t0 + 1.5, Stage.VAD, data={"turn": turn})
        for a in sorted(by_turn.get(turn, []), key=lambda a: a.t_s):
            _attempt_events(add, a, turn)
        if turn == 1 and plan.scenario == "barge_in":
            add(
                EventKind.BARGE_IN,
                t0 + 3.6,
                Stage.TELEPHONY,
                data={"heard_words": 3},
                pii={"heard_text": "Your appointment is"},
            )
        if turn:
            add(EventKind.MARK_PLAYED, t0 + 5.0, Stage.TELEPHONY, data={"mark": f"r{turn}.s0"})
    _ending_events(add, plan)
    call = CallRecord(
        plan.call_id,
        "clinic",
        plan.started_at,
        plan.started_at + plan.ended_after_s if plan.ended_after_s is not None else None,
        plan.outcome,
        _error_text(plan),
        call_sid="CA" + plan.call_id,
        data={"turns": plan.turns},
    )
    return call, events


def _attempt_events(emit: Emit, a: PlannedAttempt, turn: int) -> None:
    stage = Stage(a.stage)
    if a.number == 2:  # only TTS fails over here: elevenlabs → piper
        reason = "hedge" if a.hedged else "timeout"
        emit(
            EventKind.PROVIDER_FAILED_OVER,
            a.t_s - a.latency_s - 0.01,
            stage,
            provider=a.provider,
            data={"from": "elevenlabs", "to": a.provider, "reason": reason, "hedged": a.hedged},
        )
    data: dict[str, Any] = {"attempt": a.number, "hedged": a.hedged, "model_version": None}
    if a.cost_usd is not None:
        data["cost_usd"] = a.cost_usd
    emit(
        EventKind.PROVIDER_ATTEMPTED,
        a.t_s,
        stage,
        provider=a.provider,
        model=_MODELS[a.stage],
        latency_s=a.latency_s,
        outcome=a.outcome,
        error_class=a.error_class,
        data=data,
    )
    if a.stage == "stt":
        emit(
            EventKind.TRANSCRIPT_FINAL,
            a.t_s + 0.01,
            stage,
            provider=a.provider,
            latency_s=a.latency_s,
            outcome="ok" if a.outcome == "ok" else "error",
            error_class=a.error_class,
            data={"turn": turn},
            pii={"text": "I'd like to book a visit"},
        )
    elif a.stage == "llm" and a.outcome == "ok":
        emit(
            EventKind.DIALOG_DECIDED,
            a.t_s + 0.01,
            Stage.DIALOG,
            latency_s=a.latency_s + 0.01,
            data={"reason": "user_turn"},
            pii={"agent_text": "Which day suits you?"},
        )
    elif a.stage == "tts" and a.outcome == "ok":
        emit(
            EventKind.TTS_FIRST_AUDIO,
            a.t_s + 0.01,
            stage,
            provider=a.provider,
            latency_s=a.latency_s,
            data={"turn": turn, "since_turn_end_s": 1.1},
        )


def _ending_events(emit: Emit, plan: PlannedCall) -> None:
    end_t = plan.ended_after_s
    if plan.scenario == "protocol_error":
        emit(
            EventKind.PROTOCOL_ERROR,
            (end_t or 1.0) - 0.5,
            Stage.TELEPHONY,
            outcome="error",
            data={"error": "expected a json object, got 'x'", "event": None},
        )
    failing = [a for a in plan.attempts if a.outcome == "error"]
    if plan.outcome == "failed" and failing and failing[-1].stage != "stt":
        last = failing[-1]  # the driver's "no provider left" record, without a stage
        emit(
            EventKind.PROVIDER_ATTEMPTED,
            last.t_s + 0.01,
            None,
            provider=last.provider,
            outcome="error",
            error_class=last.error_class,
            data={"status": None},
        )
    if end_t is not None:
        ended_by = "error" if plan.outcome == "failed" else "agent"
        emit(
            EventKind.CALL_ENDED,
            end_t,
            Stage.TELEPHONY,
            outcome=plan.outcome,
            data={"turns": plan.turns, "ended_by": ended_by},
        )


_MODELS = {"stt": "nova-3", "llm": "gpt-4o-mini", "tts": "eleven_flash_v2_5"}


def _error_text(plan: PlannedCall) -> str | None:
    return {
        "tts_failed": "provider failed: elevenlabs: no first byte within 1.2 s",
        "stt_failed": "provider failed: deepgram: HTTP 503",
        "llm_failed": "provider failed: openai: HTTP 401",
        "recovered_then_llm_failed": "provider failed: openai: HTTP 401",
        "protocol_error": "protocol error: expected a json object, got 'x'",
        "unexplained": "RuntimeError: boom",
    }.get(plan.scenario)


class _CallSink(Protocol):
    def save_call(self, call: CallRecord) -> None: ...

    def append(self, event: Event) -> None: ...


def store_calls(store: _CallSink, plans: Iterable[PlannedCall]) -> None:
    """Save each plan's call row, then append its events (as :func:`events_for` gives
    them) to an event store (SQLite or PostgreSQL); the store is left open."""
    for plan in plans:
        call, events = events_for(plan)
        store.save_call(call)
        for event in events:
            store.append(event)
