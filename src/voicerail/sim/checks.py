"""What a simulated call is checked against; pure functions, no I/O.

Per call (:func:`check_call`): the scenario's expectations (outcome, booking,
handoff, disclosure, phrases said or never said, who hung up, latency), audio
gaps at the caller's ear, and protocol errors seen by either side.

Per run (:func:`find_contamination`): every caller carries unique tokens; a
token found in *another* call's transcript, agent speech, events or stored
records is cross-session contamination and fails the run. The check reports
how many callers' own tokens it could see in their own records, so that a check
that sees nothing (and so could never fail) is visible as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicerail.sim.caller import CallResult
from voicerail.sim.scenario import CallPlan
from voicerail.testing.speech_corpus import normalize_text

AI_WORDS = ("ai", "artificial", "virtual", "automated", "robot")
RECORDING_WORDS = ("record", "recorded", "recording")
LATENCY_KINDS = ("speech", "dtmf")


@dataclass
class CallCheck:
    """The verdict on one call.

    Attributes:
        plan: what the caller was scripted to do.
        failures: ``(check, message)`` pairs; empty when the call passed.
        unchecked: expectations that could not be checked (no server records).
        latencies_ms: latency at the caller's ear per answered speech/DTMF turn.
        runtime_share_ms: per answered turn, the server's own time (see
            :func:`runtime_shares_ms`).
        inbound_lag_ms: per caller turn, how late the server saw its end (see
            :func:`inbound_lags_ms`).
        outcome: the server's outcome label, when known.
        refused: why the server refused the call cleanly (busy TwiML or a 1013
            close); a refused call is neither passed nor failed.
    """

    plan: CallPlan
    failures: list[tuple[str, str]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    runtime_share_ms: list[float] = field(default_factory=list)
    inbound_lag_ms: list[float] = field(default_factory=list)
    outcome: str | None = None
    refused: str | None = None

    @property
    def passed(self) -> bool:
        """True when no check failed (a cleanly refused call fails none)."""
        return not self.failures

    def fail(self, check: str, message: str) -> None:
        """Record a failed check."""
        self.failures.append((check, message))


def normalized(text: str) -> str:
    """Lowercase words, numbers spelled out, single spaces, padded with spaces
    so that ``f" {phrase} " in normalized(text)`` matches whole words."""
    return f" {normalize_text(text)} "


def contains_phrase(haystack_normalized: str, phrase: str) -> bool:
    """True when ``phrase`` occurs as whole words in an already :func:`normalized` text."""
    needle = normalize_text(phrase)
    return bool(needle) and f" {needle} " in haystack_normalized


def agent_texts(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the agent decided to say, in order."""
    return [
        str(e.get("pii", {}).get("agent_text", ""))
        for e in events
        if e.get("kind") == "DialogDecided"
    ]


def transcripts(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the server heard, in order."""
    return [
        str(e.get("pii", {}).get("text", "")) for e in events if e.get("kind") == "TranscriptFinal"
    ]


def runtime_shares_ms(events: Sequence[Mapping[str, Any]]) -> list[float]:
    """The runtime's own share of each answered turn, milliseconds.

    From the end of the caller's turn to the first agent audio queued
    (``TTSFirstAudio.data.since_turn_end_s``), minus the time spent waiting for
    providers: the STT wait after the turn ended
    (``TranscriptFinal.data.wait_after_turn_end_s``, or its latency), the
    dialog's decision (``DialogDecided.latency_s``) and the TTS's first audio
    (``TTSFirstAudio.latency_s``). What is left is voicerail's own work and
    scheduling.
    """
    shares = []
    stt_wait_s = 0.0
    dialog_s = 0.0
    for event in events:
        kind = event.get("kind")
        data = event.get("data") or {}
        if kind == "UserTurnEnded":
            stt_wait_s = dialog_s = 0.0
        elif kind == "TranscriptFinal":
            waited = data.get("wait_after_turn_end_s")
            stt_wait_s = float(waited if waited is not None else event.get("latency_s") or 0.0)
        elif kind == "DialogDecided":
            dialog_s = float(event.get("latency_s") or 0.0)
        elif kind == "TTSFirstAudio":
            since = data.get("since_turn_end_s")
            if since is not None:
                tts_s = float(event.get("latency_s") or 0.0)
                shares.append((float(since) - stt_wait_s - dialog_s - tts_s) * 1000)
            stt_wait_s = dialog_s = 0.0
    return shares


def inbound_lags_ms(events: Sequence[Mapping[str, Any]]) -> list[float]:
    """How late the server detected the end of each caller turn, milliseconds.

    The server reports it as ``UserTurnEnded.data.inbound_lag_s``: the detection
    time minus when the end would be seen if every frame were read on arrival,
    on the caller's audio clock (origin fixed by the earliest-arriving frame, so
    a caller that starts its audio late does not count). It is what
    :func:`runtime_shares_ms` cannot see, because that share starts at
    detection: a server too busy to keep up with inbound audio detects every
    turn late, and the lag grows through the call. It includes the network and
    the caller's own send lag after its first frame, and up to one frame and one
    VAD window of rounding; frames lost on the way make it look larger by their
    duration.

    For a server whose events lack ``inbound_lag_s``, the origin is the
    ``StreamStarted`` time instead (which also counts a late first frame).
    """
    started = next((e.get("at_mono") for e in events if e.get("kind") == "StreamStarted"), None)
    lags = []
    for event in events:
        data = event.get("data") or {}
        if event.get("kind") != "UserTurnEnded":
            continue
        if data.get("inbound_lag_s") is not None:
            lags.append(float(data["inbound_lag_s"]) * 1000)
        elif started is not None and data.get("speech_end_s") is not None:
            wait_s = float(data.get("endpoint_wait_s") or 0)
            due = float(started) + float(data["speech_end_s"]) + wait_s
            lags.append((float(event["at_mono"]) - due) * 1000)
    return lags


def check_call(
    plan: CallPlan,
    result: CallResult | None,
    server: Mapping[str, Any] | None,
    *,
    error: str | None = None,
    server_has_api: bool = True,
    booking_rows: Sequence[Mapping[str, Any]] = (),
) -> CallCheck:
    """Check one call against its plan.

    Args:
        plan: the scripted caller.
        result: the caller's measurements (None when the call could not be placed).
        server: the server's record and events (``GET /api/calls/{id}``), or None.
        error: why the call could not be placed or failed at the caller.
        server_has_api: False for targets without voicerail's REST API (their
            server-side expectations are reported as unchecked, not failed).
        booking_rows: the stored bookings written by this call.
    """
    check = CallCheck(plan=plan)
    if result is None or error is not None:
        check.fail("call", f"call failed at the caller: {error or 'no result'}")
        return check
    if result.refused is not None:
        check.refused = result.refused
        check.outcome = "refused"
        return check
    _check_caller_side(check, result)
    if server is None:
        if server_has_api:
            check.fail("server_record", "the server never recorded the call")
        check.unchecked += _server_expectations(plan)
        return check
    events = list(server.get("events") or [])
    check.outcome = server.get("outcome")
    check.runtime_share_ms = runtime_shares_ms(events)
    check.inbound_lag_ms = inbound_lags_ms(events)
    _check_server_side(check, server, events, booking_rows)
    return check


def _check_caller_side(check: CallCheck, result: CallResult) -> None:
    expect = check.plan.expect
    for index, timing in enumerate(result.turns):
        if timing.kind not in LATENCY_KINDS:
            continue
        latency = timing.v2v_latency_s
        if latency is None:
            if result.hung_up_by == "agent" and index == len(result.turns) - 1:
                continue  # the agent ended the call after the caller's last words
            check.fail("reply", f"turn {index + 1} ({timing.label[:40]}): no agent reply")
            continue
        latency_ms = latency * 1000
        check.latencies_ms.append(latency_ms)
        if expect.max_turn_latency_ms is not None and latency_ms > expect.max_turn_latency_ms:
            check.fail(
                "latency",
                f"turn {index + 1}: {latency_ms:.0f} ms at the caller's ear "
                f"exceeds {expect.max_turn_latency_ms:.0f} ms",
            )
    if result.audio_gaps_s:
        total_ms = sum(result.audio_gaps_s) * 1000
        check.fail(
            "audio_gap",
            f"{len(result.audio_gaps_s)} gaps in the agent's audio ({total_ms:.0f} ms in all)",
        )
    for message in result.protocol_errors[:3]:
        check.fail("protocol", f"server sent: {message}")
    if expect.hung_up_by is not None and result.hung_up_by != expect.hung_up_by:
        check.fail(
            "hung_up_by", f"expected the {expect.hung_up_by} to hang up, got {result.hung_up_by}"
        )


def _server_expectations(plan: CallPlan) -> list[str]:
    expect = plan.expect
    names = ["outcome", "booking", "handoff", "disclosure"]
    unchecked = [n for n in names if getattr(expect, n) is not None]
    if expect.must_say or expect.must_not_say:
        unchecked.append("phrases")
    return unchecked


def _check_server_side(
    check: CallCheck,
    server: Mapping[str, Any],
    events: list[dict[str, Any]],
    booking_rows: Sequence[Mapping[str, Any]],
) -> None:
    expect = check.plan.expect
    outcome = server.get("outcome")
    wanted = expect.outcome
    allowed = [wanted] if isinstance(wanted, str) else list(wanted or [])
    if allowed and outcome not in allowed:
        check.fail("outcome", f"expected outcome {' or '.join(allowed)}, got {outcome}")
    elif outcome == "failed" and "failed" not in allowed:
        check.fail("outcome", f"the call failed on the server: {server.get('error')}")
    for event in events:
        if event.get("kind") == "ProtocolErrorReceived":
            error = (event.get("data") or {}).get("error")
            check.fail("protocol", f"server saw a protocol error: {error}")
    said = agent_texts(events)
    said_norm = normalized(" | ".join(said))
    for phrase in expect.must_say:
        if not contains_phrase(said_norm, phrase):
            check.fail("must_say", f"the agent never said {phrase!r}")
    for phrase in expect.must_not_say:
        if contains_phrase(said_norm, phrase):
            check.fail("must_not_say", f"the agent said {phrase!r}")
    if expect.handoff is not None:
        handed = bool((server.get("data") or {}).get("handoff")) or any(
            e.get("kind") == "HandoffRequested" for e in events
        )
        if handed != expect.handoff:
            check.fail("handoff", f"expected handoff {expect.handoff}, got {handed}")
    if expect.disclosure:
        problem = disclosure_problem(events)
        if problem:
            check.fail("disclosure", problem)
    if expect.booking is not None:
        for problem in booking_problems(
            expect.booking.model_dump(exclude_none=True), server, events, booking_rows
        ):
            check.fail("booking", problem)


def disclosure_problem(events: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the greeting's AI and recording disclosure was not heard, or None.

    The greeting is the first decision; if the caller barged in before the
    agent's next decision, only the ``BargeIn`` event's ``heard_text`` counts.
    """
    said = agent_texts(events)
    if not said:
        return "the agent never spoke"
    heard = said[0]
    seen_greeting = False
    for event in events:
        kind = event.get("kind")
        if kind == "DialogDecided":
            if seen_greeting:
                break
            seen_greeting = True
        elif kind == "BargeIn" and seen_greeting:
            heard = str((event.get("pii") or {}).get("heard_text", ""))
            break
    words = normalized(heard)
    if not any(f" {w} " in words for w in AI_WORDS):
        return f"the greeting heard does not disclose the AI: {heard[:80]!r}"
    if not any(w in words for w in RECORDING_WORDS):
        return f"the greeting heard does not disclose the recording: {heard[:80]!r}"
    return None


def booking_problems(
    wanted: Mapping[str, str],
    server: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    booking_rows: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Differences between the wanted booking fields and what was booked.

    The booked values are the ``pii`` of the decision that wrote the booking
    (the agent's spoken form) and, when given, the stored rows.
    """
    booked = [
        e
        for e in events
        if e.get("kind") == "DialogDecided"
        and (e.get("data") or {}).get("action") == "book_appointment"
    ]
    booking_id = (server.get("data") or {}).get("booking_id")
    if not booked and not booking_id:
        return ["no booking was written"]
    values = dict((booked[-1].get("pii") or {}) if booked else {})
    problems = []
    for key, value in wanted.items():
        got = str(values.get(key, ""))
        if not contains_phrase(normalized(got), value):
            problems.append(f"booking {key}: expected {value!r}, got {got!r}")
    if booking_rows and "name" in wanted:
        names = [str(row.get("name", "")) for row in booking_rows]
        if not any(contains_phrase(normalized(n), wanted["name"]) for n in names):
            problems.append(f"stored booking name {names!r} is not {wanted['name']!r}")
    return problems


# -- contamination ---------------------------------------------------------------------


@dataclass(frozen=True)
class Contamination:
    """One caller's token found in another call's records.

    Attributes:
        owner: index of the caller the token belongs to.
        found_in: index of the call whose records contain it.
        token: the token.
        where: ``transcript``, ``agent speech``, ``events`` or ``stored records``.
    """

    owner: int
    found_in: int
    token: str
    where: str


@dataclass
class ContaminationReport:
    """Cross-session contamination over a run.

    Attributes:
        findings: every token found where it does not belong.
        calls_checked: calls whose records were searched.
        own_tokens_seen: calls whose own spoken token appears in their own records
            (evidence that the check can see tokens at all).
        spoken_tokens: calls that have a spoken token.
    """

    findings: list[Contamination] = field(default_factory=list)
    calls_checked: int = 0
    own_tokens_seen: int = 0
    spoken_tokens: int = 0


def _record_texts(
    server: Mapping[str, Any], booking_rows: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    events = list(server.get("events") or [])
    return {
        "transcript": normalized(" | ".join(transcripts(events))),
        "agent speech": normalized(" | ".join(agent_texts(events))),
        "events": normalized(json.dumps(server, default=str)),
        "stored records": normalized(json.dumps(list(booking_rows), default=str)),
    }


def find_contamination(
    calls: Iterable[tuple[CallPlan, Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]],
) -> ContaminationReport:
    """Search every call's records for every other caller's tokens.

    Args:
        calls: ``(plan, server record or None, stored booking rows)`` per call.
    """
    entries = list(calls)
    report = ContaminationReport()
    texts: dict[int, dict[str, str]] = {}
    for plan, server, rows in entries:
        if server is not None:
            texts[plan.index] = _record_texts(server, rows)
    report.calls_checked = len(texts)
    owners = [(plan.index, token) for plan, _, _ in entries for token in plan.tokens]
    for plan, _, _ in entries:
        if plan.token:
            report.spoken_tokens += 1
            own = texts.get(plan.index)
            # Not "events": they hold the caller's own script (custom parameters).
            seen_in = ("transcript", "agent speech", "stored records")
            if own is not None and any(contains_phrase(own[k], plan.token) for k in seen_in):
                report.own_tokens_seen += 1
    combined = {index: " ".join(parts.values()) for index, parts in texts.items()}
    for owner, token in owners:
        needle = normalize_text(token)
        if not needle:
            continue
        pattern = f" {needle} "
        for index, text in combined.items():
            if index == owner or pattern not in text:
                continue
            where = next(w for w, t in texts[index].items() if pattern in t)
            report.findings.append(Contamination(owner, index, token, where))
    return report
