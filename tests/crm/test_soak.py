"""The soak benchmark at small N: 0 duplicates under 20% faults, and the count can catch one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "crm_soak.py"


@pytest.fixture(scope="module")
def crm_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crm_soak", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crm_soak"] = module
    spec.loader.exec_module(module)
    return module


def test_small_soak_delivers_every_write_once(
    crm_soak: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """300 calls, 20% faults, replays: every queued write delivered, none twice."""
    result = crm_soak.main(["--calls", "300", "--fault-rate", "0.2"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert {"attempted", "delivered", "duplicates", "dead_lettered"} <= set(last)
    assert result["duplicates"] == 0
    assert result["replays"] > 0 and result["attempted"] == result["queued"] + result["replays"]
    assert result["delivered"] + result["dead_lettered"] + result["superseded"] == result["queued"]
    assert result["pending_at_end"] == 0 and result["delivered_but_absent_at_crm"] == 0
    # Bookings moved or cancelled before delivery: the CRM holds each one's last state.
    assert result["changed_bookings"] > 0 and result["superseded"] > 0
    assert result["incoherent_bookings"] == 0 and result["cancelled_left_live"] == 0
    assert set(result["faults"]) == {"kill", "rate_limited", "server_error", "timeout_after_commit"}


def test_a_crm_without_upsert_shows_duplicates(crm_soak: ModuleType) -> None:
    """The control: a CRM that creates on every delivery duplicates after lost answers."""
    result = crm_soak.main(["--calls", "200", "--crm-without-upsert"])
    assert result["duplicates"] > 0
