"""Query parameters of the REST API, bounded and validated before any store read.

Rules:

1. Every parameter a route reads is parsed here; a bad value is a 400 naming the
   parameter and the accepted range, never a 500.
2. ``limit`` is an integer from 1 to :data:`~voicerail.events.store.MAX_CALLS_LIMIT`
   (issue 11: ``limit=-1`` returned every row, ``limit=2**63`` a traceback).
3. Filters (``outcome``, ``call_sid``) are handed to the store, which applies them
   before ``LIMIT``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from voicerail.events.model import Outcome
from voicerail.events.store import MAX_CALLS_LIMIT

DEFAULT_CALLS_LIMIT = 50

# Twilio call SIDs are "CA" and 32 hex digits; Telnyx call_control_ids are
# "v3:" and some 50 base64url characters; Plivo and Vonage use UUIDs; test and
# simulated SIDs are shorter.
_CALL_SID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_OUTCOMES = tuple(str(o) for o in Outcome)


class BadParameter(ValueError):
    """A query parameter is out of range or malformed (answered with 400).

    Attributes:
        name: the parameter.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class CallsQuery:
    """The parameters of ``GET /api/calls``.

    Attributes:
        limit: rows to return, 1 to ``MAX_CALLS_LIMIT``.
        outcome: only calls with this outcome (an :class:`Outcome` value).
        call_sid: only the call with this Twilio call SID (personal data).
    """

    limit: int = DEFAULT_CALLS_LIMIT
    outcome: str | None = None
    call_sid: str | None = None


def parse_calls_query(params: Mapping[str, str]) -> CallsQuery:
    """Parse ``GET /api/calls`` parameters (rules 1 to 3).

    Raises:
        BadParameter: a value is malformed or out of range.
    """
    raw_limit = params.get("limit")
    limit = DEFAULT_CALLS_LIMIT
    if raw_limit is not None:
        # Digits only, and few of them: int() of a huge string is itself slow.
        if (
            not raw_limit.isdigit()
            or len(raw_limit) > 6
            or not 1 <= int(raw_limit) <= MAX_CALLS_LIMIT
        ):
            raise BadParameter("limit", f"must be an integer from 1 to {MAX_CALLS_LIMIT}")
        limit = int(raw_limit)
    outcome = params.get("outcome")
    if outcome is not None and outcome not in _OUTCOMES:
        raise BadParameter("outcome", f"must be one of {', '.join(_OUTCOMES)}")
    call_sid = params.get("call_sid")
    if call_sid is not None and not _CALL_SID.fullmatch(call_sid):
        raise BadParameter("call_sid", "must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
    return CallsQuery(limit=limit, outcome=outcome, call_sid=call_sid)
