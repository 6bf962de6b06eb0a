"""The main job: a demo call to the clinic agent on real and synthesized speech.

``make demo`` runs ``python -m voicerail.demo``: it starts ``voicerail serve``
with ``examples/clinic.yaml``, places one simulated Twilio call whose caller
turns are a real recorded human utterance that is off-script (from Debian's
``asterisk-core-sounds-en-wav``) and synthesized turns in flite's ``slt``
voice that book an appointment, then prints the conversation, the per-turn
latencies at the caller and the call's timeline.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from voicerail.cli import timeline_table
from voicerail.events.model import Event
from voicerail.sim.api_client import fetch_call, summarize
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import recorded_prompt, synthesize_caller_wav
from voicerail.testing.server import serve_process

# (kind, content): "recorded" names an asterisk prompt, "say" is synthesized.
DEMO_SCRIPT = [
    ("recorded", "all-circuits-busy-now"),  # "All circuits are busy now." — off-script
    ("say", "I would like to book an appointment."),
    ("say", "Next Tuesday at three in the afternoon."),
    ("say", "My name is Maria Lopez."),
    ("say", "Yes, please book it."),
    ("say", "No, that's all. Thank you, goodbye."),
]


def demo_turns(work_dir: Path) -> list[CallerTurn]:
    """The demo caller's turns as 8 kHz μ-law."""
    turns = []
    for index, (kind, content) in enumerate(DEMO_SCRIPT):
        if kind == "recorded":
            path = recorded_prompt(content)
        else:
            path = synthesize_caller_wav(content, work_dir / f"caller-{index}.wav")
        turns.append(CallerTurn.from_wav(path))
    return turns


async def _place_call(base_url: str, turns: list[CallerTurn]) -> dict[str, Any]:
    media_url = base_url.replace("http://", "ws://") + "/twilio/media"
    caller = SimulatedTwilioCall(media_url, voice_url=f"{base_url}/twilio/voice")
    result = await caller.run(turns)
    server = await fetch_call(base_url, result.call_sid)
    summary = summarize(result, server)
    summary["events"] = server["events"] if server else []
    return summary


def main() -> int:
    """Run the demo; exit status 0 when the call ended with a booking."""
    console = Console(width=max(Console().width, 140))
    work_dir = Path("var/demo")
    turns = demo_turns(work_dir / "audio")
    console.print("[bold]voicerail demo[/bold]: starting the clinic agent (loading models)…")
    with serve_process(["--agent", "examples/clinic.yaml"], data_dir=work_dir) as base_url:
        console.print(f"server up at {base_url}; placing a call with {len(turns)} caller turns")
        summary = asyncio.run(_place_call(base_url, turns))
        bookings = httpx.get(f"{base_url}/api/calls/{summary['call_id']}").json()
    console.rule("conversation")
    console.print(f"[cyan]agent:[/cyan] {summary['greeting']}")
    for turn in summary["turns"]:
        console.print(
            f"[green]caller[/green] ({Path(turn['caller_audio']).name}): "
            f"heard as “{turn['transcript']}”"
        )
        console.print(
            f"[cyan]agent:[/cyan] {turn['agent_text']}   "
            f"[dim](voice-to-voice {turn['v2v_latency_ms']} ms at the caller)[/dim]"
        )
    console.rule("timeline")
    events = [Event.from_dict(e) for e in summary["events"]]
    console.print(timeline_table(events))
    booking = bookings.get("data", {}).get("booking_id")
    console.rule("result")
    console.print(
        f"call {summary['call_id']}: outcome [bold]{summary['outcome']}[/bold], booking {booking}"
    )
    return 0 if summary["outcome"] == "completed" and booking else 1


if __name__ == "__main__":
    sys.exit(main())
