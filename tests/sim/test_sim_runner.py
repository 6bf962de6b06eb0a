"""Load runs end to end against the real server with cloud-like fake providers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from voicerail.sim.audio import AudioLibrary
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.sim.fake_server import FakeServerConfig, serve_in_process
from voicerail.sim.fakes import CloudLatency
from voicerail.sim.impair import ImpairedLink, Impairment
from voicerail.sim.runner import (
    RunOptions,
    RunResult,
    Target,
    custom_parameters,
    probe_target,
    run_calls,
)
from voicerail.sim.scenario import expand, parse_suite

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"

CLINIC_SUITE = {
    "name": "clinic-small",
    "turn_gap_s": 0.7,
    "variables": {
        "first": ["Maria", "James", "Priya", "Daniel"],
        "last": ["Lopez", "Carter", "Patel", "Nguyen"],
    },
    "scenarios": [
        {
            "name": "book",
            "token": "{first} {last}",
            "turns": [
                {"say": "I would like to book an appointment."},
                {"say": "Next Tuesday at 3 PM."},
                {"say": "My name is {first} {last}."},
                {"say": "Yes, please book it."},
                {"say": "No, that's all. Goodbye."},
            ],
            "expect": {
                "outcome": "completed",
                "booking": {"name": "{first} {last}", "day": "tuesday", "time": "3 pm"},
                "handoff": False,
                "disclosure": True,
                "must_say": ["confirmation number"],
                "hung_up_by": "agent",
            },
        },
        {
            "name": "human-please",
            "turns": [{"say": "Can I talk to a real person?"}],
            "expect": {"outcome": "handoff", "handoff": True, "disclosure": True},
        },
    ],
}

ECHO_SUITE = {
    "name": "echo-small",
    "turn_gap_s": 0.6,
    "variables": {"first": ["Maria", "James", "Priya"], "last": ["Lopez", "Carter", "Patel"]},
    "scenarios": [
        {
            "name": "say-my-name",
            "token": "{first} {last}",
            "turns": [{"say": "My name is {first} {last}."}, {"say": "Goodbye."}],
            "expect": {"outcome": "completed", "must_say": ["{first} {last}"]},
        }
    ],
}


async def simulate(
    raw: dict[str, Any],
    config: FakeServerConfig,
    library: AudioLibrary,
    *,
    calls: int,
    concurrency: int,
) -> RunResult:
    plans = expand(parse_suite(raw), calls=calls)
    turns = await asyncio.to_thread(library.prepare, plans)
    async with serve_in_process(config) as base_url:
        target = await probe_target(Target(base_url=base_url, data_dir=config.data_dir))
        return await run_calls(target, plans, turns, RunOptions(concurrency=concurrency))


def explain(run: RunResult) -> str:
    return json.dumps([(c.plan.scenario, c.outcome, c.failures) for c in run.checks], indent=1)


async def test_small_suite_passes_against_the_clinic_agent(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """Three concurrent callers book or ask for a human; every expectation holds, nothing leaks."""
    config = FakeServerConfig(agent=str(CLINIC), data_dir=data_dir, vad="silero", latency=fast)
    run = await simulate(CLINIC_SUITE, config, audio_library, calls=3, concurrency=3)
    assert run.passed, explain(run)
    assert [c.outcome for c in run.checks] == ["completed", "handoff", "completed"]
    assert run.contamination.calls_checked == 3
    assert run.contamination.own_tokens_seen == 2  # the bookers' names are in their records
    assert len(run.booking_rows) == 2
    assert run.target.has_sim_stats and run.server_stats is not None
    assert all(c.latencies_ms for c in run.checks)


async def test_contamination_check_catches_a_server_that_shares_state(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """A broken agent that greets callers with the previous caller's words fails the run."""
    config = FakeServerConfig(agent="leaky", data_dir=data_dir, vad="energy", latency=fast)
    run = await simulate(ECHO_SUITE, config, audio_library, calls=3, concurrency=2)
    assert not run.passed
    findings = run.contamination.findings
    assert findings, explain(run)
    assert all(f.where == "agent speech" and f.owner != f.found_in for f in findings)
    leaked_into = {f.found_in for f in findings}
    assert any(name == "contamination" for i in leaked_into for name, _ in run.checks[i].failures)


async def test_the_same_suite_passes_against_a_correct_server(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """The echo agent keeps calls apart: the contamination check stays quiet."""
    config = FakeServerConfig(agent="echo", data_dir=data_dir, vad="energy", latency=fast)
    run = await simulate(ECHO_SUITE, config, audio_library, calls=3, concurrency=2)
    assert run.passed, explain(run)
    assert run.contamination.own_tokens_seen == 3


async def test_mixed_transports_in_one_run_keep_calls_apart(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """Four callers, one per provider (Twilio, Telnyx, Plivo, Vonage), each from its
    webhook to its stream: every call passes and no caller's words leak to another."""
    config = FakeServerConfig(agent="echo", data_dir=data_dir, vad="energy", latency=fast)
    raw = dict(
        ECHO_SUITE,
        variables={
            "first": ["Maria", "James", "Priya", "Omar"],
            "last": ["Lopez", "Carter", "Patel", "Haddad"],
        },
    )
    plans = expand(parse_suite(raw), calls=4)
    turns = await asyncio.to_thread(audio_library.prepare, plans)
    options = RunOptions(concurrency=4, transport="twilio,telnyx,plivo,vonage")
    async with serve_in_process(config) as base_url:
        target = await probe_target(Target(base_url=base_url, data_dir=config.data_dir))
        run = await run_calls(target, plans, turns, options)
    assert run.passed, explain(run)
    assert run.contamination.calls_checked == 4 and run.contamination.own_tokens_seen == 4
    assert all(not r.protocol_errors for r in run.results.values())
    transports = sorted(rec["data"]["transport"] for rec in run.server_records.values())
    assert transports == ["plivo", "telnyx", "twilio", "vonage"]


async def test_grouped_outbound_frames_play_without_gaps_and_marks_still_follow_the_audio(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """With 100 ms media messages the callers hear continuous audio, and every mark comes back."""
    config = FakeServerConfig(
        agent="echo", data_dir=data_dir, vad="energy", latency=fast, frames_per_media=5
    )
    run = await simulate(ECHO_SUITE, config, audio_library, calls=2, concurrency=2)
    assert run.passed, explain(run)
    results = [r for r in run.results.values() if r is not None]
    assert results and all(r.audio_gaps_s == [] for r in results)
    assert all(r.marks_echoed > 0 for r in results)
    # Fewer messages than frames: the server grouped them.
    assert all(r.agent_audio_s / 0.02 > 2 * r.agent_media_messages for r in results)


async def test_impairment_adds_the_configured_delay_to_latency_at_the_ear(
    audio_library: AudioLibrary, data_dir: Path, fast: CloudLatency
) -> None:
    """100 ms each way makes every turn about 200 ms slower at the caller's ear."""
    raw = {"turn_gap_s": 0.6, "scenarios": [{"name": "one", "turns": [{"say": "Hello there."}]}]}
    plan = expand(parse_suite(raw))[0]
    (turns,) = await asyncio.to_thread(audio_library.prepare, [plan])
    config = FakeServerConfig(agent="echo", data_dir=data_dir, vad="energy", latency=fast)

    async def latency_s(base_url: str, link: ImpairedLink | None) -> float:
        caller = SimulatedTwilioCall(
            base_url.replace("http", "ws") + "/twilio/media",
            turn_gap_s=0.6,
            custom_parameters=custom_parameters(plan),
            link=link,
        )
        result = await caller.run(turns)
        value = result.turns[0].v2v_latency_s
        assert value is not None
        return value

    async with serve_in_process(config) as base_url:
        direct, impaired = await asyncio.gather(
            latency_s(base_url, None), latency_s(base_url, ImpairedLink(Impairment(delay_s=0.1)))
        )
    assert 0.12 <= impaired - direct <= 0.30, (direct, impaired)
