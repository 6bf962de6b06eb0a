"""Cost of the compliance work on each caller turn: transcript screening (spoken cards,
phones, e-mails, dates of birth, names) and event screening, per call of many.

Prints microseconds per transcript and per event (median and p99 over the run) on this
machine, single core, for a mix of ordinary and personal-data turns.

Usage::

    .venv/bin/python bench/redaction.py [--turns 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from voicerail.compliance.dialog import CompliantAgent
from voicerail.compliance.policy import load_policy
from voicerail.events.model import Event, EventKind
from voicerail.testing.doubles import QuietAgent

TURNS = [
    "I'd like to book an appointment for Monday at ten",
    "my name is Ada Lovelace and my number is 555 010 9999",
    "my card is four one one one one one one one one one one one one one one one",
    "I was born on March 3rd, 1985, email ada at example dot com",
    "can you move my visit to Thursday afternoon please",
    "yes that's right",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20000)
    args = parser.parse_args()
    agent = CompliantAgent(QuietAgent(), load_policy({}))
    dialogs = [agent.new_dialog(f"vr_{i}") for i in range(100)]  # many calls at once
    transcript_us: list[float] = []
    event_us: list[float] = []
    for n in range(args.turns):
        dialog = dialogs[n % len(dialogs)]
        text = TURNS[n % len(TURNS)]
        started = time.perf_counter()
        dialog.screen_transcript(text)
        transcript_us.append((time.perf_counter() - started) * 1e6)
        event = Event(dialog.conduct.call_id, EventKind.DIALOG_DECIDED, 0.0, 0.0,
                      pii={"agent_text": f"So that's Monday for {text}."})  # fmt: skip
        started = time.perf_counter()
        dialog.screen_event(event)
        event_us.append((time.perf_counter() - started) * 1e6)
    for name, values in (("transcript", transcript_us), ("event", event_us)):
        values.sort()
        p99 = values[int(len(values) * 0.99)]
        print(f"{name}: median {statistics.median(values):.1f} µs, p99 {p99:.1f} µs "
              f"({len(values)} screened)")  # fmt: skip


if __name__ == "__main__":
    main()
