"""The context gate: the agent sees exactly the customer fields it needs.

Rules kept here:

1. Deny by default. A CRM field reaches the dialog, the LLM prompt, the events
   or the logs only when the agent file lists it, under ``must`` (needed for
   the task, visible from the start) or ``when`` (visible once a condition
   holds: an intent was recognized, or the caller passed a verification).
2. The gate is the only road from a :class:`~voicerail.crm.model.CustomerRecord`
   to the rest of voicerail: it returns a :class:`GatedContext`, a plain dict
   of the allowed fields, and the record is dropped. A field denied now and
   allowed later is re-read from the record kept inside the gate, never from
   a copy made earlier.
3. Conditions are names: ``verified:<check>`` (e.g. ``verified:dob``, set when
   the caller confirmed their date of birth) and ``intent:<name>`` (set when the
   NLU or the LLM recognized it). The dialog tells the gate which hold.
4. A verification compares what the caller said with a field the agent may
   *not* see (``verify: {dob: date_of_birth}``) inside the gate: the dialog
   learns only whether it matched, never the value. After three wrong answers
   to one check it fails for the rest of the call, so a model (or a caller)
   cannot guess its way through.

The agent file's section (all keys optional)::

    context:
      must: [first_name, upcoming_appointment]
      when:
        account_balance: "verified:dob"
        last_invoice: ["verified:dob", "intent:billing"]   # any of these
      verify:
        dob: date_of_birth          # check name -> the CRM field it compares with
      fill:
        name: [first_name, last_name]   # a flow slot -> the must fields that fill it

``fill`` lets a flow agent use what the CRM knows: a recognized caller's slot
(e.g. ``name``) is filled from ``must`` fields, joined by spaces, so the agent
does not ask for it (``handoff/contextual.py`` rule 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicerail.crm.model import CustomerRecord
from voicerail.errors import ConfigError

_CONDITION_KINDS = ("verified", "intent")
MAX_WRONG_ANSWERS = 3  # rule 4


@dataclass(frozen=True)
class ContextPolicy:
    """Which CRM fields the agent may see (rule 1).

    Attributes:
        must: fields visible from the start.
        when: field → the conditions of which any one makes it visible.
        verify: check name → the CRM field the caller's answer is compared with.
        fill: flow slot → the ``must`` fields whose values, joined by spaces, fill it.
    """

    must: tuple[str, ...] = ()
    when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    verify: Mapping[str, str] = field(default_factory=dict)
    fill: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, source: str = "<agent>") -> ContextPolicy:
        """Parse the agent file's ``context`` section (None: the agent sees nothing).

        Raises:
            ConfigError: a field list is not a list of names, or a condition is
                not ``verified:<name>`` / ``intent:<name>``.
        """
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("expected a mapping with 'must' and 'when'", source=source)
        unknown = set(raw) - {"must", "when", "verify", "fill"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", source=source, field="context")
        must = raw.get("must") or []
        if not isinstance(must, list) or not all(isinstance(f, str) and f for f in must):
            raise ConfigError("expected a list of field names", source=source, field="context.must")
        when: dict[str, tuple[str, ...]] = {}
        for name, conditions in (raw.get("when") or {}).items():
            items = [conditions] if isinstance(conditions, str) else conditions
            where = f"context.when.{name}"
            if not isinstance(items, list) or not items:
                raise ConfigError("expected a condition or a list", source=source, field=where)
            for condition in items:
                _check_condition(condition, source, where)
            when[str(name)] = tuple(items)
        verify = raw.get("verify") or {}
        if not isinstance(verify, Mapping) or not all(
            isinstance(v, str) and v for v in verify.values()
        ):
            raise ConfigError("expected check: field", source=source, field="context.verify")
        return cls(
            must=tuple(must),
            when=when,
            verify={str(k): v for k, v in verify.items()},
            fill=_fill(raw.get("fill"), must, source),
        )

    def allowed(self, conditions: Iterable[str]) -> frozenset[str]:
        """The fields visible while ``conditions`` hold."""
        held = set(conditions)
        extra = {name for name, needs in self.when.items() if held.intersection(needs)}
        return frozenset(self.must) | extra


def _fill(raw: object, must: list[str], source: str) -> dict[str, tuple[str, ...]]:
    """The ``fill`` section: slot → ``must`` fields (a field the agent may not see
    from the start cannot fill a slot).

    Raises:
        ConfigError: not a mapping of slot → list of ``must`` fields.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("expected slot: [fields]", source=source, field="context.fill")
    fill: dict[str, tuple[str, ...]] = {}
    for slot, fields in raw.items():
        where = f"context.fill.{slot}"
        items = [fields] if isinstance(fields, str) else fields
        if not isinstance(items, list) or not items:
            raise ConfigError("expected a field or a list", source=source, field=where)
        hidden = [f for f in items if f not in must]
        if hidden:
            raise ConfigError(f"not under 'must': {hidden}", source=source, field=where)
        fill[str(slot)] = tuple(items)
    return fill


def _check_condition(condition: object, source: str, where: str) -> None:
    if not isinstance(condition, str) or ":" not in condition:
        raise ConfigError(
            f"expected 'verified:<name>' or 'intent:<name>', got {condition!r}",
            source=source,
            field=where,
        )
    kind, _, name = condition.partition(":")
    if kind not in _CONDITION_KINDS or not name:
        raise ConfigError(
            f"expected 'verified:<name>' or 'intent:<name>', got {condition!r}",
            source=source,
            field=where,
        )


@dataclass(frozen=True)
class GatedContext:
    """The customer fields the agent may see now (rule 2).

    Attributes:
        known_caller: True when the CRM recognized the caller.
        fields: allowed field → value; personal data, kept in marked fields only
            (an event's ``pii``), never in log messages.
        field_names: the allowed names present, sorted: safe to log and record.
    """

    known_caller: bool
    fields: Mapping[str, Any]

    @property
    def field_names(self) -> list[str]:
        return sorted(self.fields)

    def prompt_text(self) -> str:
        """The context as lines for an LLM system prompt (empty for an unknown caller)."""
        if not self.known_caller:
            return "The caller is not in the CRM."
        lines = [f"- {name}: {self.fields[name]}" for name in self.field_names]
        return "What the CRM says about the caller:\n" + "\n".join(lines)


class ContextGate:
    """One call's gate over one CRM record (rules 1-3).

    Args:
        policy: the agent file's ``context`` section.
        record: the CRM's record of the caller, None for an unknown caller.
    """

    def __init__(self, policy: ContextPolicy, record: CustomerRecord | None) -> None:
        self._policy = policy
        self._record = record
        self._conditions: set[str] = set()
        self._wrong: dict[str, int] = {}

    def hold(self, condition: str) -> None:
        """Record that ``condition`` (``"verified:dob"``, ``"intent:billing"``) now holds.

        Raises:
            ConfigError: ``condition`` is not of rule 3's form.
        """
        _check_condition(condition, "<dialog>", "condition")
        self._conditions.add(condition)

    def verify(self, check: str, answer: str) -> bool:
        """Compare the caller's ``answer`` with the hidden field of ``check`` (rule 4).

        A match holds ``verified:<check>``. The comparison ignores case, spaces
        and punctuation (``"14/03/1985"`` does not match ``"1985-03-14"``: the
        dialog normalizes dates before asking).

        Returns:
            True when it matched; False when it did not, the check is unknown,
            the caller is not in the CRM, or three answers were already wrong.
        """
        field_name = self._policy.verify.get(check)
        if self._record is None or field_name is None:
            return False
        if self._wrong.get(check, 0) >= MAX_WRONG_ANSWERS:
            return False
        expected = self._record.fields.get(field_name)
        if expected is None or _canonical(str(expected)) != _canonical(answer):
            self._wrong[check] = self._wrong.get(check, 0) + 1
            return False
        self._conditions.add(f"verified:{check}")
        return True

    def context(self) -> GatedContext:
        """The fields the agent may see now."""
        if self._record is None:
            return GatedContext(known_caller=False, fields={})
        allowed = self._policy.allowed(self._conditions)
        fields = {k: v for k, v in self._record.fields.items() if k in allowed}
        return GatedContext(known_caller=True, fields=fields)


def _canonical(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())
