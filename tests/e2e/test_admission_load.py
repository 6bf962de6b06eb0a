"""Three times the capacity at once, embedded models: every call served or refused, none failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicerail.sim import cli

pytestmark = pytest.mark.slow

SUITE = """
name: clinic-overload
scenarios:
  - name: hours
    turns:
      - say: What are your opening hours?
    expect: {disclosure: true, handoff: false, must_say: ["Monday to Friday"]}
"""


def test_three_times_the_ceiling_at_once_ends_with_no_failed_call(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    status = cli.main(
        [str(suite), "--serve", "examples/clinic.yaml", "--max-calls", "2",
         "--calls", "6", "--concurrency", "6", "--report", str(tmp_path / "r"),
         "--data-dir", str(tmp_path / "server"), "--cache-dir", str(tmp_path / "cache"),
         "--no-progress"]
    )  # fmt: skip
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    failures = [c["failures"] for c in report["calls"]]
    assert status == 0, json.dumps(failures, indent=1)
    assert summary["outcomes"].get("failed", 0) == 0
    assert summary["failed"] == 0 and summary["failed_at_caller"] == 0
    assert summary["refused"] >= 3  # at most 2 in progress; the 6 rang together
    assert summary["passed"] + summary["refused"] == 6
    refusals = [c["refused"] for c in report["calls"] if c["refused"]]
    assert all(r.startswith("webhook: Say + Hangup") for r in refusals), refusals
