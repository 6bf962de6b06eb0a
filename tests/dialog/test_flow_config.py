"""Agent files: the schema and its rules, each error naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flow_config import load_agent_spec
from voicerail.dialog.flows import load_agent
from voicerail.errors import ConfigError

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"


def test_the_clinic_file_loads() -> None:
    spec = load_agent_spec(CLINIC)
    assert spec.start == "start" and spec.nodes["more"].transitions == {
        "yes": "start",
        "no": "goodbye",
    }
    assert spec.slots["name"].keep and spec.intents["human"].keywords


def clinic_with(old: str, new: str) -> str:
    text = CLINIC.read_text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("content", "field", "fragment"),
    [
        ("- just a list\n", None, "must be a mapping"),
        ("name: [unclosed\n", None, "not valid YAML"),
        ("name: x\ngreeting: hi\n", "disclosure", "field required"),
        (clinic_with("{disclosure}\n", "\n"), "greeting", "must contain {disclosure}"),
        (clinic_with("  robot:\n", "  machine:\n"), "intents", "'robot' is required"),
        (clinic_with("[day, time, name]", "[day, shoe]"), "nodes.book.collect.1", "'shoe'"),
        (clinic_with('"no": goodbye', '"no": nowhere'), "nodes.more.transitions.no", "nowhere"),
        (clinic_with("  cancel: cancel\n", "  cancal: cancel\n"), "routes.cancal", "'cancal'"),
        (clinic_with("for {name}.", "for {nmae}."), "nodes.book.confirm", "{nmae}"),
        (clinic_with("type: time", "type: hour"), "slots.time.type", "input should be"),
        (clinic_with("max_misunderstandings: 2", "max_misunderstandings: 0"), None, "greater"),
        (clinic_with("start: start", "start: begin"), "start", "unknown node 'begin'"),
        (
            clinic_with("    done: Your appointment has been cancelled.\n", ""),
            "nodes.cancel",
            "done",
        ),
        (clinic_with("    end_call: true", "    end_cal: true"), "nodes.goodbye.end_cal", "extra"),
        (clinic_with("  goodbye:\n    say:", "  goodbye:\n    next: more\n    say:"), None, None),
        (clinic_with("    end_call: true\n", "    next: goodbye\n"), "nodes.goodbye.next", "never"),
        (
            clinic_with("    collect: [name]\n", "    collect: [day]\n"),
            "nodes.cancel.collect",
            "name",
        ),
        (
            clinic_with("      time: What time", "      tyme: What time"),
            "nodes.reschedule.ask.tyme",
            "not in collect",
        ),
        (
            clinic_with("    prompt: How can I help you today?", "    say: Hi."),
            "nodes.start",
            "a node",
        ),
        (
            clinic_with("  goodbye:\n    say:", "  goodbye:\n    confirm: Sure?\n    say:"),
            None,
            "action",
        ),
        (clinic_with("greeting: >-", "greeting: >-\n  {oops"), "greeting", "bad template"),
    ],
)
def test_bad_agent_files_name_the_file_and_field(
    tmp_path: Path, content: str, field: str | None, fragment: str | None
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    if fragment is None:  # valid: a goodbye node may link on; the file loads
        load_agent_spec(path)
        return
    with pytest.raises(ConfigError, match=fragment) as error:
        load_agent_spec(path)
    assert error.value.source == str(path) and str(path) in str(error.value)
    if field is not None:
        assert error.value.field == field


def test_a_missing_agent_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read agent file"):
        load_agent(tmp_path / "none.yaml", bookings=BookingStore(":memory:"))


def test_load_agent_reports_the_file_error_before_loading_a_model(
    tmp_path: Path, embedder: MiniLMEmbedder
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="disclosure") as error:
        load_agent(path, bookings=BookingStore(":memory:"), embedder=embedder)
    assert error.value.source == str(path)
