"""``voicerail simulate`` against ``voicerail serve`` with the embedded speech models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicerail.sim import cli

pytestmark = pytest.mark.slow

SUITE = """
name: clinic-embedded
concurrency: 2
scenarios:
  - name: hours
    turns:
      - say: What are your opening hours?
    expect: {disclosure: true, handoff: false, must_say: ["Monday to Friday"]}
  - name: human
    turns:
      - say: Can I talk to a real person?
    expect: {outcome: handoff, handoff: true, disclosure: true}
"""


def test_two_concurrent_callers_pass_against_the_clinic_with_real_models(tmp_path: Path) -> None:
    """Synthesized callers, whisper, piper and Silero: both expectations hold, nothing leaks."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    status = cli.main(
        [str(suite), "--serve", "examples/clinic.yaml", "--report", str(tmp_path / "r"),
         "--data-dir", str(tmp_path / "server"), "--cache-dir", str(tmp_path / "cache"),
         "--no-progress"]
    )  # fmt: skip
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert status == 0, json.dumps([c["failures"] for c in report["calls"]], indent=1)
    assert report["summary"]["contamination"]["findings"] == 0
