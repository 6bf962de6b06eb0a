"""Scenario files: who calls, what they say and do, and what must come of it.

A scenario file (YAML) holds a *suite*: default settings, variable lists, and a
list of scenarios. A scenario is one caller persona: a list of turns and the
outcomes expected. ``voicerail simulate --schema`` prints the JSON Schema;
``examples/scenarios/README.md`` documents every field with examples.

Rules kept here:

1. A turn does exactly one thing: ``say`` (synthesized text), ``audio`` (a
   recorded file), ``silence``, ``dtmf`` or ``hangup``. Modifiers (``voice``,
   ``noise``, ``barge_in_after``) are accepted only where they mean something.
2. Text fields are templates over the variables (``"My name is {first} {last}"``);
   every placeholder must name a defined variable, checked at load time.
3. Every simulated caller carries a unique ``sim_token`` (sent in
   ``start.customParameters``) and, when the scenario names one, a unique
   spoken token (its ``token`` template, e.g. the caller's name). Expansion
   fails when the variable lists cannot give every caller a distinct token.
4. Expansion is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voicerail.errors import ConfigError

OutcomeName = Literal["completed", "handoff", "abandoned", "failed"]
_FORMATTER = string.Formatter()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseSpec(_Strict):
    """Background noise mixed into a turn's audio.

    Attributes:
        kind: ``white`` or ``pink`` generated noise, or ``babble``: other real
            speech (Debian's asterisk prompts) summed underneath.
        snr_db: speech-to-noise ratio in dB (lower is noisier).
    """

    kind: Literal["white", "pink", "babble"] = "white"
    snr_db: float = Field(default=10.0, ge=-10.0, le=60.0)


class TurnSpec(_Strict):
    """One thing a caller does. Exactly one of ``say``, ``audio``, ``silence``,
    ``dtmf``, ``hangup``.

    Attributes:
        say: text to synthesize (a template).
        voice: ``ENGINE:VOICE`` for ``say``: ``flite:slt``, ``flite:kal``,
            ``espeak-ng:en-us+f3`` (default: the suite's voice).
        audio: a WAV file (relative to the scenario file), or
            ``asterisk:NAME`` for a recorded prompt of Debian's
            ``asterisk-core-sounds-en-wav``, or ``pocketsphinx:SET/ID`` for a
            clip of ``pocketsphinx-testdata``.
        silence: stay silent this many seconds.
        dtmf: keypad digits to press (``0-9``, ``*``, ``#``).
        hangup: hang up (send ``stop`` and close the socket).
        barge_in_after: act this many seconds after the agent starts its next
            reply instead of waiting for it to finish (a barge-in; with
            ``hangup``, hanging up mid-sentence).
        noise: background noise mixed into ``say``/``audio``.
    """

    say: str | None = None
    voice: str | None = Field(default=None, pattern=r"^(flite|espeak-ng):[\w+.-]+$")
    audio: str | None = None
    silence: float | None = Field(default=None, gt=0.0, le=120.0)
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#]+$")
    hangup: bool | None = None
    barge_in_after: float | None = Field(default=None, ge=0.0, le=60.0)
    noise: NoiseSpec | None = None

    @model_validator(mode="after")
    def _one_action(self) -> TurnSpec:
        actions = [
            name
            for name in ("say", "audio", "silence", "dtmf", "hangup")
            if getattr(self, name) not in (None, False)
        ]
        if len(actions) != 1:
            got = ", ".join(actions) or "none"
            raise ValueError(
                f"a turn needs exactly one of say, audio, silence, dtmf, hangup (got {got})"
            )
        if self.voice is not None and self.say is None:
            raise ValueError("voice applies only to a say turn")
        if self.noise is not None and self.say is None and self.audio is None:
            raise ValueError("noise applies only to a say or audio turn")
        if self.barge_in_after is not None and self.silence is not None:
            raise ValueError("barge_in_after does not apply to a silence turn")
        return self


class BookingExpect(_Strict):
    """Fields the booking must have (templates; compared after normalization, so
    ``"3 pm"`` matches the agent's ``"3 PM"`` and ``"tuesday"`` its
    ``"Tuesday, November 24"``)."""

    name: str | None = None
    day: str | None = None
    time: str | None = None


class ExpectSpec(_Strict):
    """What must come of the call. Unset fields are not checked.

    Attributes:
        outcome: the call's outcome label, or a list of acceptable labels.
        booking: a booking must have been written, with these fields.
        handoff: whether a human handoff must (true) or must not (false) be requested.
        disclosure: the greeting discloses the AI and the recording, and the
            caller heard that part (it was not cut by a barge-in).
        must_say: phrases the agent must say at least once (templates).
        must_not_say: phrases the agent must never say (templates).
        hung_up_by: ``agent`` or ``caller``.
        max_turn_latency_ms: every answered turn's latency at the caller's ear.
    """

    outcome: OutcomeName | list[OutcomeName] | None = None
    booking: BookingExpect | None = None
    handoff: bool | None = None
    disclosure: bool | None = None
    must_say: list[str] = Field(default_factory=list)
    must_not_say: list[str] = Field(default_factory=list)
    hung_up_by: Literal["agent", "caller"] | None = None
    max_turn_latency_ms: float | None = Field(default=None, gt=0.0)


class ScenarioSpec(_Strict):
    """One caller persona.

    Attributes:
        name: identifier (letters, digits, ``-``, ``_``).
        description: free text for the report.
        repeat: callers of this scenario in one round of the suite.
        variables: value lists for this scenario's templates (override the suite's).
        token: template of the caller's unique spoken token (e.g. ``"{first} {last}"``).
        voice: default voice of this scenario's ``say`` turns.
        turns: what the caller does, in order, after the agent's greeting.
        expect: what must come of the call.
        turn_gap_s: agent silence after which its reply counts as finished.
        max_reply_wait_s: longest wait for a reply.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    repeat: int = Field(default=1, ge=1, le=10_000)
    variables: dict[str, list[str]] = Field(default_factory=dict)
    token: str | None = None
    voice: str | None = Field(default=None, pattern=r"^(flite|espeak-ng):[\w+.-]+$")
    turns: list[TurnSpec] = Field(default_factory=list)
    expect: ExpectSpec = ExpectSpec()
    turn_gap_s: float | None = Field(default=None, gt=0.0, le=10.0)
    max_reply_wait_s: float | None = Field(default=None, gt=0.0, le=300.0)


class SuiteSpec(_Strict):
    """A scenario file.

    Attributes:
        version: the file format version (1).
        name: the suite's name.
        description: free text.
        voice: default synthesis voice.
        turn_gap_s: default agent silence that ends a reply.
        max_reply_wait_s: default longest wait for a reply.
        variables: value lists shared by every scenario.
        calls: default number of callers (``--calls`` overrides); one round when unset.
        concurrency: default concurrent callers.
        ramp_s: default ramp-up time.
        seed: seed of the variations.
        scenarios: the personas.
    """

    version: Literal[1] = 1
    name: str = "suite"
    description: str = ""
    voice: str = Field(default="flite:slt", pattern=r"^(flite|espeak-ng):[\w+.-]+$")
    turn_gap_s: float = Field(default=1.2, gt=0.0, le=10.0)
    max_reply_wait_s: float = Field(default=30.0, gt=0.0, le=300.0)
    variables: dict[str, list[str]] = Field(default_factory=dict)
    calls: int | None = Field(default=None, ge=1, le=100_000)
    concurrency: int | None = Field(default=None, ge=1, le=10_000)
    ramp_s: float | None = Field(default=None, ge=0.0, le=3600.0)
    seed: int = 0
    scenarios: list[ScenarioSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_templates(self) -> SuiteSpec:
        names = [s.name for s in self.scenarios]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"scenario names must be unique; {duplicates[0]!r} repeats")
        for index, scenario in enumerate(self.scenarios):
            known = set(self.variables) | set(scenario.variables)
            for where, template in _templates(scenario):
                for placeholder in placeholders(template):
                    if placeholder not in known:
                        raise ValueError(
                            f"scenarios[{index}] ({scenario.name}).{where}: unknown variable "
                            f"{{{placeholder}}}; defined: {sorted(known) or 'none'}"
                        )
            for var, values in {**self.variables, **scenario.variables}.items():
                if not values:
                    raise ValueError(f"scenarios[{index}]: variable {var!r} has no values")
        return self


def placeholders(template: str) -> list[str]:
    """The variable names a template uses (``"{a} {b}"`` → ``["a", "b"]``).

    Raises:
        ValueError: the template is malformed (an unmatched brace).
    """
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name]


def _templates(scenario: ScenarioSpec) -> Iterable[tuple[str, str]]:
    if scenario.token:
        yield "token", scenario.token
    for index, turn in enumerate(scenario.turns):
        for key in ("say", "audio"):
            value = getattr(turn, key)
            if value:
                yield f"turns[{index}].{key}", value
    expect = scenario.expect
    if expect.booking is not None:
        for key, value in expect.booking.model_dump(exclude_none=True).items():
            yield f"expect.booking.{key}", value
    for key in ("must_say", "must_not_say"):
        for index, phrase in enumerate(getattr(expect, key)):
            yield f"expect.{key}[{index}]", phrase


def parse_suite(raw: Any, *, source: str = "<scenarios>") -> SuiteSpec:
    """Validate a decoded scenario file.

    Raises:
        ConfigError: the first problem, with the field path (``scenarios.0.turns.2``).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("a scenario file is a mapping with a 'scenarios' list", source=source)
    try:
        return SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or None
        message = str(error["msg"]).removeprefix("Value error, ")
        message = message[0].lower() + message[1:] if message else message
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        more = exc.error_count() - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(message, source=source, field=where) from None


def load_suite(path: str | Path) -> SuiteSpec:
    """Read and validate a scenario file.

    Raises:
        ConfigError: unreadable, not YAML, or invalid (the message names the field).
    """
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read scenario file: {exc}", source=source) from None
    return parse_suite(raw, source=source)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files."""
    return SuiteSpec.model_json_schema()


# -- expansion -------------------------------------------------------------------


@dataclass(frozen=True)
class TurnPlan:
    """One turn of one simulated caller, templates filled.

    Attributes:
        kind: ``say``, ``audio``, ``silence``, ``dtmf`` or ``hangup``.
        text: what is said (``say``) or the audio reference (``audio``).
        voice: ``ENGINE:VOICE`` for ``say``.
        silence_s: for ``silence``.
        dtmf: for ``dtmf``.
        barge_in_after_s: see :class:`TurnSpec`.
        noise: see :class:`NoiseSpec`.
    """

    kind: str
    text: str = ""
    voice: str = ""
    silence_s: float = 0.0
    dtmf: str = ""
    barge_in_after_s: float | None = None
    noise: NoiseSpec | None = None


@dataclass(frozen=True)
class CallPlan:
    """Everything one simulated caller will do and be checked against.

    Attributes:
        index: position in the run (0-based).
        scenario: the scenario's name.
        values: the variable values drawn for this caller.
        sim_token: unique id sent in ``start.customParameters``.
        token: the unique spoken token, when the scenario has one.
        turns: the turns.
        expect: the expectations, templates filled.
        turn_gap_s: agent silence that ends a reply.
        max_reply_wait_s: longest wait for a reply.
        base_dir: where relative audio paths are resolved.
    """

    index: int
    scenario: str
    values: dict[str, str]
    sim_token: str
    token: str | None
    turns: tuple[TurnPlan, ...]
    expect: ExpectSpec
    turn_gap_s: float
    max_reply_wait_s: float
    base_dir: Path = field(default=Path("."))

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token that identifies this caller."""
        return (self.sim_token,) + ((self.token,) if self.token else ())


def expand(
    suite: SuiteSpec,
    *,
    calls: int | None = None,
    seed: int | None = None,
    base_dir: Path = Path("."),
) -> list[CallPlan]:
    """Turn a suite into ``calls`` concrete callers.

    Scenarios are taken in rounds (each ``repeat`` times per round) until
    ``calls`` callers exist; one round when ``calls`` and ``suite.calls`` are unset.

    Raises:
        ConfigError: the variables cannot give every caller a distinct token.
    """
    rng = random.Random(suite.seed if seed is None else seed)
    round_ = [s for s in suite.scenarios for _ in range(s.repeat)]
    count = calls or suite.calls or len(round_)
    chosen = [round_[k % len(round_)] for k in range(count)]
    token_pools: dict[str, list[dict[str, str]]] = {}
    used_tokens: set[str] = set()
    plans = []
    for index, scenario in enumerate(chosen):
        variables = {**suite.variables, **scenario.variables}
        values = {name: rng.choice(options) for name, options in variables.items()}
        token = None
        if scenario.token:
            pool = token_pools.setdefault(
                scenario.name, _token_combinations(scenario.token, variables, rng)
            )
            token, combo = _take_token(pool, scenario, used_tokens, chosen)
            values.update(combo)
            used_tokens.add(_norm(token))
        sim_token = f"vrsim{index:05d}x{rng.getrandbits(40):010x}"
        plans.append(_plan(index, scenario, suite, values, sim_token, token, base_dir))
    return plans


def _token_combinations(
    template: str, variables: Mapping[str, list[str]], rng: random.Random
) -> list[dict[str, str]]:
    names = sorted(set(placeholders(template)))
    combos = [dict(zip(names, values, strict=True)) for values in _product(variables, names)]
    rng.shuffle(combos)
    return combos


def _product(variables: Mapping[str, list[str]], names: list[str]) -> Iterable[tuple[str, ...]]:
    lists = [list(dict.fromkeys(variables[name])) for name in names]
    total = 1
    for values in lists:
        total *= len(values)
    if total > 200_000:
        raise ConfigError(f"token variables give {total} combinations; at most 200000")
    return itertools.product(*lists)


def _take_token(
    pool: list[dict[str, str]],
    scenario: ScenarioSpec,
    used: set[str],
    chosen: list[ScenarioSpec],
) -> tuple[str, dict[str, str]]:
    assert scenario.token is not None
    while pool:
        combo = pool.pop()
        token = scenario.token.format(**combo)
        if _norm(token) not in used:
            return token, combo
    needed = sum(1 for s in chosen if s.name == scenario.name)
    raise ConfigError(
        f"{needed} callers need distinct tokens but the variables give fewer; "
        "add values to the token's variables or lower --calls",
        field=f"scenario {scenario.name}.token",
    )


def _plan(
    index: int,
    scenario: ScenarioSpec,
    suite: SuiteSpec,
    values: dict[str, str],
    sim_token: str,
    token: str | None,
    base_dir: Path,
) -> CallPlan:
    voice = scenario.voice or suite.voice
    turns = []
    for spec in scenario.turns:
        if spec.say is not None:
            plan = TurnPlan("say", text=spec.say.format(**values), voice=spec.voice or voice)
        elif spec.audio is not None:
            plan = TurnPlan("audio", text=spec.audio.format(**values))
        elif spec.silence is not None:
            plan = TurnPlan("silence", silence_s=spec.silence)
        elif spec.dtmf is not None:
            plan = TurnPlan("dtmf", dtmf=spec.dtmf)
        else:
            plan = TurnPlan("hangup")
        turns.append(
            TurnPlan(
                plan.kind,
                text=plan.text,
                voice=plan.voice,
                silence_s=plan.silence_s,
                dtmf=plan.dtmf,
                barge_in_after_s=spec.barge_in_after,
                noise=spec.noise,
            )
        )
    expect = _fill_expect(scenario.expect, values)
    return CallPlan(
        index=index,
        scenario=scenario.name,
        values=values,
        sim_token=sim_token,
        token=token,
        turns=tuple(turns),
        expect=expect,
        turn_gap_s=scenario.turn_gap_s or suite.turn_gap_s,
        max_reply_wait_s=scenario.max_reply_wait_s or suite.max_reply_wait_s,
        base_dir=base_dir,
    )


def _fill_expect(expect: ExpectSpec, values: Mapping[str, str]) -> ExpectSpec:
    booking = expect.booking
    if booking is not None:
        booking = BookingExpect(
            **{k: v.format(**values) for k, v in booking.model_dump(exclude_none=True).items()}
        )
    return expect.model_copy(
        update={
            "booking": booking,
            "must_say": [p.format(**values) for p in expect.must_say],
            "must_not_say": [p.format(**values) for p in expect.must_not_say],
        }
    )


def _norm(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
