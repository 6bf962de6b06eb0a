"""A load run: many scripted callers against one server, then every check.

Rules kept here:

1. One asyncio process drives every caller; audio is pre-encoded before the
   first call (:class:`~voicerail.sim.audio.AudioLibrary`), so callers only
   slice frames and format JSON while the run is timed.
2. At most ``concurrency`` calls are in progress; the first ``concurrency``
   start evenly over ``ramp_s``, later ones as soon as a slot frees up.
3. A call that fails at the caller (connection refused, handshake timeout) is
   a failed call, never an exception out of the run.
4. The server's records are read after the last call ended, so that reading
   them does not load the server while it is being measured.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from voicerail.events.store import MAX_CALLS_LIMIT
from voicerail.sim.caller import CallerTurn, CallResult, SimulatedTwilioCall
from voicerail.sim.checks import CallCheck, ContaminationReport, check_call, find_contamination
from voicerail.sim.impair import ImpairedLink, Impairment
from voicerail.sim.resources import LoopLagMonitor, ProcessMonitor, lag_summary
from voicerail.sim.scenario import CallPlan


@dataclass(frozen=True)
class Target:
    """The server under test.

    Attributes:
        base_url: ``http://host:port``.
        media_path: the Twilio media WebSocket path.
        pid: the server's process id when it runs on this machine (for CPU and memory).
        data_dir: its data directory when known (stored bookings are read from it).
        has_api: it serves voicerail's REST API (``/api/calls``).
        has_sim_stats: it is the instrumented fake server (``/sim/stats``).
        label: how the report names it.
    """

    base_url: str
    media_path: str = "/twilio/media"
    pid: int | None = None
    data_dir: Path | None = None
    has_api: bool = True
    has_sim_stats: bool = False
    label: str = "voicerail"

    @property
    def media_url(self) -> str:
        """``ws://host:port/twilio/media``."""
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}{self.media_path}"


async def probe_target(target: Target) -> Target:
    """Fill in what the target serves (API, sim stats) and its pid when local."""
    async with httpx.AsyncClient(base_url=target.base_url, timeout=5.0) as client:
        has_api = await _answers(client, "/api/calls?limit=1")
        has_stats = await _answers(client, "/sim/stats")
    pid = target.pid if target.pid is not None else local_pid(target.base_url)
    return Target(
        base_url=target.base_url,
        media_path=target.media_path,
        pid=pid,
        data_dir=target.data_dir,
        has_api=has_api,
        has_sim_stats=has_stats,
        label=target.label,
    )


async def _answers(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.HTTPError:
        return False


def local_pid(base_url: str) -> int | None:
    """The pid listening on ``base_url``'s port on this machine, if it can be seen."""
    import psutil

    try:
        port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except (ValueError, IndexError, psutil.Error):
        return None
    return None


@dataclass(frozen=True)
class RunOptions:
    """How to run.

    Attributes:
        concurrency: calls in progress at most.
        ramp_s: time over which the first ``concurrency`` calls start.
        impairment: in-process network impairment of every call's media path.
        open_timeout_s: WebSocket opening handshake limit.
        transport: the provider every call comes through (``twilio``, ``telnyx``,
            ``plivo``, ``vonage``): its webhook, then its stream
            (``sim/provider_calls.py``); a comma-separated list mixes them, call
            ``i`` through the ``i % n``-th. The impairment applies to text frames only.
    """

    concurrency: int = 10
    ramp_s: float = 0.0
    impairment: Impairment = field(default_factory=Impairment)
    open_timeout_s: float = 15.0
    transport: str = "twilio"


@dataclass
class Progress:
    """Live counters for a progress display."""

    total: int = 0
    started: int = 0
    active: int = 0
    done: int = 0
    failed_at_caller: int = 0


@dataclass
class RunResult:
    """Everything a run produced.

    Attributes:
        target: the server.
        options: how it ran.
        plans: the callers.
        results: the caller's measurements by plan index (None: could not be placed).
        errors: why a call failed at the caller, by plan index.
        server_records: the server's record and events by plan index.
        booking_rows: stored bookings by plan index.
        checks: verdict per call, in plan order.
        contamination: the cross-session check.
        server_resources: the server process's CPU and memory summary (None when remote).
        server_series: its samples over time.
        server_stats: ``/sim/stats`` of the instrumented fake server.
        simulator: the simulator's own loop lag, send lag and CPU.
        started_at: wall clock; duration_s: how long the calls took.
    """

    target: Target
    options: RunOptions
    plans: list[CallPlan]
    results: dict[int, CallResult] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    server_records: dict[int, dict[str, Any]] = field(default_factory=dict)
    booking_rows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    checks: list[CallCheck] = field(default_factory=list)
    contamination: ContaminationReport = field(default_factory=ContaminationReport)
    server_resources: dict[str, Any] | None = None
    server_series: list[dict[str, float]] = field(default_factory=list)
    server_stats: dict[str, Any] | None = None
    simulator: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every call passed or was cleanly refused, at least one was
        served, and nothing leaked between sessions."""
        served = [c for c in self.checks if c.refused is None]
        return bool(served) and all(c.passed for c in served) and not self.contamination.findings


def custom_parameters(plan: CallPlan) -> dict[str, str]:
    """What a simulated caller sends in ``start.customParameters``."""
    script = [t.text for t in plan.turns if t.kind in ("say", "audio")]
    return {
        "sim_token": plan.sim_token,
        "sim_scenario": plan.scenario,
        "sim_script": json.dumps([_spoken_text(t) for t in script]),
    }


def _spoken_text(reference_or_text: str) -> str:
    """The words of a turn: the text itself, or a recorded prompt's transcript."""
    scheme, sep, rest = reference_or_text.partition(":")
    if sep and scheme == "asterisk":
        from voicerail.testing.speech_corpus import CorpusUnavailable, asterisk_prompts

        try:
            return asterisk_prompts([rest])[0].transcript
        except (CorpusUnavailable, KeyError):
            return ""
    if sep and scheme == "pocketsphinx":
        return ""
    return reference_or_text if not reference_or_text.endswith(".wav") else ""


async def run_calls(
    target: Target,
    plans: Sequence[CallPlan],
    turns: Sequence[Sequence[CallerTurn]],
    options: RunOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Place every call, read the server's records, check everything.

    Args:
        target: the server (see :func:`probe_target`).
        plans: the callers.
        turns: pre-encoded turns of each plan, same order.
        options: concurrency, ramp, impairment.
        on_progress: called whenever a call starts or ends.
    """
    run = RunResult(target=target, options=options, plans=list(plans))
    progress = Progress(total=len(plans))
    notify = on_progress or (lambda p: None)
    monitor = ProcessMonitor(target.pid, lambda: progress.active) if target.pid else None
    loop_lag = LoopLagMonitor()
    loop_lag.start()
    if monitor is not None:
        await monitor.start()
    if target.has_sim_stats:
        await _sim_stats(target, reset=True)
    cpu_before = time.process_time()
    run.started_at = time.time()
    started = time.monotonic()
    slots = asyncio.Semaphore(options.concurrency)

    async def one(plan: CallPlan, call_turns: Sequence[CallerTurn]) -> None:
        async with slots:
            if plan.index < options.concurrency and options.ramp_s > 0:
                due = started + options.ramp_s * plan.index / options.concurrency
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            progress.started += 1
            progress.active += 1
            notify(progress)
            try:
                run.results[plan.index] = await _place(target, plan, call_turns, options)
            except Exception as exc:  # task boundary: one call's failure, recorded
                run.errors[plan.index] = f"{type(exc).__name__}: {exc}"
                progress.failed_at_caller += 1
            finally:
                progress.active -= 1
                progress.done += 1
                notify(progress)

    await asyncio.gather(*(one(p, t) for p, t in zip(plans, turns, strict=True)))
    run.duration_s = time.monotonic() - started
    if target.has_sim_stats:
        run.server_stats = await _sim_stats(target)
    if monitor is not None:
        await monitor.stop()
        run.server_resources = monitor.summary()
        run.server_series = monitor.series()
    await loop_lag.stop()
    run.simulator = {
        "loop_lag_ms": loop_lag.lag_ms.summary(),
        "send_lag_ms": lag_summary([list(r.send_lag_ms) for r in run.results.values()]),
        "cpu_seconds": time.process_time() - cpu_before,
    }
    await _read_server(run)
    _check(run)
    return run


async def _place(
    target: Target, plan: CallPlan, call_turns: Sequence[CallerTurn], options: RunOptions
) -> CallResult:
    link = None
    if options.impairment.active:
        link = ImpairedLink(options.impairment, seed=plan.index)
    transports = options.transport.split(",")
    transport = transports[plan.index % len(transports)]
    if transport != "twilio":
        from voicerail.sim.provider_calls import answer_call

        caller = await answer_call(
            transport,
            target.base_url,
            sim_parameters=custom_parameters(plan),
            turn_gap_s=plan.turn_gap_s,
            max_reply_wait_s=plan.max_reply_wait_s,
            link=link,
            open_timeout_s=options.open_timeout_s,
        )
        return await caller.run(call_turns)
    call_sid = f"CA{uuid.uuid4().hex}"
    caller = SimulatedTwilioCall(
        target.media_url,
        turn_gap_s=plan.turn_gap_s,
        max_reply_wait_s=plan.max_reply_wait_s,
        custom_parameters=custom_parameters(plan),
        link=link,
        open_timeout_s=options.open_timeout_s,
        call_sid=call_sid,
        # voicerail's own server is rung as Twilio rings it: the webhook, its TwiML,
        # and the <Connect action> after a stream the server ended (sim/twiml.py).
        voice_url=target.base_url.rstrip("/") + "/twilio/voice" if target.has_api else None,
    )
    return await caller.run(call_turns)


async def _sim_stats(target: Target, *, reset: bool = False) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(base_url=target.base_url, timeout=10.0) as client:
            response = await client.get("/sim/stats", params={"reset": "1"} if reset else {})
            body: dict[str, Any] = response.json()
            return body
    except (httpx.HTTPError, ValueError):
        return None


async def _read_server(run: RunResult) -> None:
    """Fetch each call's record and events, and the stored bookings."""
    if not run.target.has_api or not run.results:
        return
    by_sid = {result.call_sid: index for index, result in run.results.items()}
    async with httpx.AsyncClient(base_url=run.target.base_url, timeout=30.0) as client:
        # The API serves at most MAX_CALLS_LIMIT rows a request (issue 11).
        call_ids = await _call_ids(client, by_sid, limit=min(len(run.plans) + 500, MAX_CALLS_LIMIT))
        gate = asyncio.Semaphore(8)

        async def fetch(index: int, call_id: str) -> None:
            async with gate:
                response = await client.get(f"/api/calls/{call_id}")
                if response.status_code == 200:
                    run.server_records[index] = response.json()

        await asyncio.gather(*(fetch(i, cid) for i, cid in call_ids.items()))
    if run.target.data_dir is not None:
        rows = read_bookings(run.target.data_dir / "bookings.sqlite3")
        by_call = {rec["call_id"]: i for i, rec in run.server_records.items()}
        for row in rows:
            index = by_call.get(str(row.get("call_id")))
            if index is not None:
                run.booking_rows.setdefault(index, []).append(row)
            elif float(row.get("updated_at") or 0.0) >= run.started_at:
                # Written during this run but by no call of it under its own id:
                # still searched for leaked tokens (index -1).
                run.booking_rows.setdefault(-1, []).append(row)


async def _call_ids(
    client: httpx.AsyncClient, by_sid: Mapping[str, int], *, limit: int, wait_s: float = 15.0
) -> dict[int, str]:
    """Plan index → server call id, waiting until every call has ended on the server."""
    deadline = time.monotonic() + wait_s
    found: dict[int, str] = {}
    while True:
        response = await client.get("/api/calls", params={"limit": limit})
        if response.status_code == 200:
            for call in response.json().get("calls", []):
                index = by_sid.get(call.get("call_sid"))
                if index is not None and call.get("ended_at") is not None:
                    found[index] = call["call_id"]
        if len(found) == len(by_sid) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.25)


def read_bookings(path: Path) -> list[dict[str, Any]]:
    """Every row of the embedded booking store (empty when there is none)."""
    if not path.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute("SELECT * FROM bookings")]
    except sqlite3.Error:
        return []


def _check(run: RunResult) -> None:
    for plan in run.plans:
        run.checks.append(
            check_call(
                plan,
                run.results.get(plan.index),
                run.server_records.get(plan.index),
                error=run.errors.get(plan.index),
                server_has_api=run.target.has_api,
                booking_rows=run.booking_rows.get(plan.index, []),
            )
        )
    entries = [
        (plan, run.server_records.get(plan.index), run.booking_rows.get(plan.index, []))
        for plan in run.plans
    ]
    report = find_contamination(entries)
    orphans = run.booking_rows.get(-1, [])
    if orphans:
        # Bookings no call of this run wrote under its own id still must not hold a
        # caller's token (a write attributed to the wrong call).
        from voicerail.sim.checks import Contamination, contains_phrase, normalized

        text = normalized(json.dumps(orphans, default=str))
        for plan in run.plans:
            for token in plan.tokens:
                if contains_phrase(text, token):
                    report.findings.append(Contamination(plan.index, -1, token, "stored records"))
    run.contamination = report
    for finding in report.findings:
        if finding.found_in >= 0:
            run.checks[finding.found_in].fail(
                "contamination",
                f"holds caller {finding.owner}'s token {finding.token!r} in its {finding.where}",
            )
