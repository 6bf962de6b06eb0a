"""Scenario files: validation with clear errors, and expansion into unique callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.errors import ConfigError
from voicerail.sim.scenario import expand, json_schema, load_suite, parse_suite

EXAMPLES = Path(__file__).parents[2] / "examples" / "scenarios"


def suite(**scenario: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "s", "turns": [{"say": "hello"}]}
    base.update(scenario)
    return {"scenarios": [base]}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([1, 2], "a scenario file is a mapping"),
        ({"scenarios": []}, "scenarios: list should have at least 1 item"),
        ({"version": 2, "scenarios": [{"name": "a"}]}, "version: input should be 1"),
        ({"scenarios": [{"name": "a", "colour": "red"}]}, "scenarios.0.colour: unknown field"),
        (suite(turns=[{"say": "hi", "dtmf": "1"}]), "exactly one of say, audio, silence"),
        (suite(turns=[{}]), "exactly one of say, audio, silence, dtmf, hangup (got none)"),
        (suite(turns=[{"dtmf": "12a"}]), "scenarios.0.turns.0.dtmf: string should match"),
        (suite(turns=[{"silence": -1}]), "turns.0.silence: input should be greater than 0"),
        (suite(turns=[{"dtmf": "1", "voice": "flite:slt"}]), "voice applies only to a say turn"),
        (suite(turns=[{"silence": 2, "barge_in_after": 1}]), "barge_in_after does not apply"),
        (suite(turns=[{"say": "I am {nobody}"}]), "turns[0].say: unknown variable {nobody}"),
        (suite(expect={"outcome": "booked"}), "expect.outcome"),
        (suite(name="has space"), "scenarios.0.name: string should match"),
        (
            {"scenarios": [{"name": "a"}, {"name": "a"}]},
            "scenario names must be unique; 'a' repeats",
        ),
    ],
)
def test_bad_scenario_files_are_rejected_with_the_field_named(raw: object, fragment: str) -> None:
    """Each kind of mistake gives a ConfigError naming the file, the field and the problem."""
    with pytest.raises(ConfigError) as error:
        parse_suite(raw, source="bad.yaml")
    message = str(error.value)
    assert message.startswith("bad.yaml: ")
    assert fragment in message, message


def test_unreadable_yaml_is_a_config_error(tmp_path: Path) -> None:
    """A YAML syntax error is reported as a ConfigError, not a traceback."""
    path = tmp_path / "s.yaml"
    path.write_text("scenarios: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read scenario file"):
        load_suite(path)


def test_expansion_gives_every_caller_unique_tokens_and_fills_templates() -> None:
    """Variations draw names from lists so each caller has its own spoken token."""
    raw = {
        "variables": {"first": ["Ann", "Bob", "Cy"], "last": ["Lee", "Moe"], "day": ["Monday"]},
        "scenarios": [
            {
                "name": "book",
                "repeat": 2,
                "token": "{first} {last}",
                "turns": [{"say": "My name is {first} {last}."}, {"say": "{day} please"}],
                "expect": {"booking": {"name": "{first} {last}"}, "must_say": ["{day}"]},
            },
            {"name": "other", "turns": [{"dtmf": "0"}]},
        ],
    }
    plans = expand(parse_suite(raw), calls=6, seed=3)
    assert [p.scenario for p in plans] == ["book", "book", "other"] * 2
    tokens = [p.token for p in plans if p.token]
    assert len(tokens) == 4 and len(set(tokens)) == 4
    assert len({p.sim_token for p in plans}) == 6
    first = plans[0]
    assert first.turns[0].text == f"My name is {first.token}."
    assert first.expect.booking is not None and first.expect.booking.name == first.token
    assert first.expect.must_say == ["Monday"]
    assert expand(parse_suite(raw), calls=6, seed=3)[0].token == first.token


def test_expansion_fails_when_the_variables_cannot_give_unique_tokens() -> None:
    """Asking for more callers than distinct tokens is a clear error, not a silent reuse."""
    raw = {"variables": {"n": ["A", "B"]}, "scenarios": [{"name": "x", "token": "{n}"}]}
    with pytest.raises(ConfigError, match="3 callers need distinct tokens"):
        expand(parse_suite(raw), calls=3)


def test_every_example_suite_is_valid() -> None:
    """The shipped example suites load and expand."""
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert paths
    for path in paths:
        plans = expand(load_suite(path), base_dir=EXAMPLES)
        assert plans, path


def test_the_json_schema_documents_the_turn_fields() -> None:
    """The schema printed by --schema names every turn action."""
    turn = json_schema()["$defs"]["TurnSpec"]["properties"]
    assert {"say", "audio", "silence", "dtmf", "hangup", "barge_in_after"} <= set(turn)
