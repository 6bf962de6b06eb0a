"""The call's outcome rules: the first decision sticks, a handoff overrides, then
failed / decided / completed / abandoned at the end."""

from __future__ import annotations

import pytest

from voicerail.events.model import Outcome
from voicerail.turns.outcome import decide, final


@pytest.mark.parametrize(
    ("current", "reply", "expected"),
    [
        (None, None, None),
        (None, Outcome.COMPLETED, Outcome.COMPLETED),
        (Outcome.COMPLETED, Outcome.ABANDONED, Outcome.COMPLETED),
        (Outcome.COMPLETED, None, Outcome.COMPLETED),
        (Outcome.COMPLETED, Outcome.HANDOFF, Outcome.HANDOFF),
    ],
)
def test_the_first_decision_sticks_except_for_a_handoff(current, reply, expected):
    assert decide(current, reply) is expected


@pytest.mark.parametrize(
    ("error", "decided", "ended_by", "expected"),
    [
        ("boom", Outcome.COMPLETED, "agent", Outcome.FAILED),
        (None, Outcome.HANDOFF, "caller", Outcome.HANDOFF),
        (None, None, "agent", Outcome.COMPLETED),
        (None, None, "caller", Outcome.ABANDONED),
        (None, None, "silence", Outcome.ABANDONED),
        (None, None, None, Outcome.ABANDONED),
    ],
)
def test_the_final_outcome(error, decided, ended_by, expected):
    assert final(error=error, decided=decided, ended_by=ended_by) is expected
