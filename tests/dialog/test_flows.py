"""The flow engine with the clinic agent and the real offline MiniLM embeddings."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import FlowAgent, load_agent
from voicerail.errors import ConfigError
from voicerail.events.model import Outcome

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
def agent(embedder, tmp_path) -> FlowAgent:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    return load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: date(2026, 11, 22))


async def say(dialog, *texts: str):
    reply = None
    for text in texts:
        reply = await dialog.on_user_turn(text, 0.9)
    return reply


async def test_greeting_discloses_ai_and_recording(agent):
    greeting = (await agent.new_dialog("c").start()).text
    assert "AI assistant" in greeting and "recorded" in greeting


async def test_booking_conversation_confirms_then_writes(agent):
    dialog = agent.new_dialog("c1")
    await dialog.start()
    assert "day" in (await say(dialog, "I would like to book an appointment.")).text
    assert "time" in (await say(dialog, "Next Tuesday.")).text
    assert "name" in (await say(dialog, "at 3 p.m.")).text
    confirm = await say(dialog, "My name is Maria Lopez.")
    assert "Tuesday, November 24 at 3 PM for Maria Lopez" in confirm.text
    assert agent.bookings.list_bookings() == []  # nothing written before the yes
    done = await say(dialog, "Yes, please.")
    assert done.outcome is Outcome.COMPLETED and done.booking_id in done.text
    [booking] = agent.bookings.list_bookings()
    assert (booking.name, booking.day.day, booking.time.hour) == ("Maria Lopez", 24, 15)
    bye = await say(dialog, "No, that's all, thanks.")
    assert bye.end_call and "Goodbye" in bye.text


async def test_everything_at_once_asks_only_for_what_is_missing(agent):
    dialog = agent.new_dialog("c2")
    reply = await say(dialog, "Hi, book me in for Friday at 10 in the morning please")
    assert reply.text == "May I have your full name, please?"
    assert "Friday, November 27 at 10 AM for Ana Ruiz" in (await say(dialog, "Ana Ruiz")).text


async def test_no_at_confirmation_asks_again_and_writes_nothing(agent):
    dialog = agent.new_dialog("c3")
    await say(dialog, "book an appointment Tuesday at 3pm, my name is Ana Ruiz")
    reply = await say(dialog, "No, that's wrong.")
    assert "another time" in reply.text and "day" in reply.text
    assert agent.bookings.list_bookings() == []
    assert "Wednesday" in (await say(dialog, "Wednesday at 4pm")).text


async def test_two_misunderstandings_in_a_row_hand_off(agent):
    dialog = agent.new_dialog("c4")
    first = await say(dialog, "All circuits are busy now.")
    assert not first.handoff and "didn't quite get that" in first.text
    second = await say(dialog, "The conference is full.")
    assert second.handoff and second.outcome is Outcome.HANDOFF and second.end_call


async def test_understood_turn_resets_the_misunderstanding_count(agent):
    dialog = agent.new_dialog("c5")
    await say(dialog, "All circuits are busy now.")
    await say(dialog, "I want to make an appointment")
    assert not (await say(dialog, "The conference is full.")).handoff


@pytest.mark.parametrize(
    "text", ["Can I talk to a real person?", "Transfer me to the receptionist please"]
)
async def test_explicit_human_request_hands_off(agent, text):
    reply = await say(agent.new_dialog("c6"), text)
    assert reply.handoff and "transfer" in reply.text.lower()


async def test_robot_question_is_answered_truthfully_and_the_flow_resumes(agent):
    dialog = agent.new_dialog("c7")
    await say(dialog, "I'd like to book an appointment on Tuesday")
    reply = await say(dialog, "Wait, am I talking to a robot?")
    assert "AI assistant" in reply.text and reply.text.endswith("what time works for you?")
    assert "name" in (await say(dialog, "3 pm")).text


async def test_opening_hours(agent):
    reply = await say(agent.new_dialog("c8"), "When are you open on Saturday?")
    assert "Saturday from 9 AM" in reply.text


async def test_dtmf_zero_hands_off_and_one_confirms(agent):
    assert (await agent.new_dialog("c9").on_dtmf("0")).handoff
    dialog = agent.new_dialog("c10")
    await say(dialog, "book Tuesday at 3pm, my name is Ana Ruiz")
    assert (await dialog.on_dtmf("1")).outcome is Outcome.COMPLETED


async def test_reschedule_and_cancel_find_the_booking_by_name(agent):
    book = agent.new_dialog("c11")
    await say(book, "book Tuesday at 3pm, my name is Ana Ruiz", "yes")
    move = agent.new_dialog("c12")
    await say(move, "I need to reschedule my appointment", "My name is Ana Ruiz")
    confirm = await say(move, "Thursday at 11 in the morning")
    assert "Thursday, November 26 at 11 AM" in confirm.text
    assert (await say(move, "yes")).outcome is Outcome.COMPLETED
    [booking] = agent.bookings.find("Ana Ruiz")
    assert (booking.day.day, booking.time.hour) == (26, 11)
    cancel = agent.new_dialog("c13")
    await say(cancel, "I want to cancel my appointment", "It's Ana Ruiz")
    assert "cancelled" in (await say(cancel, "yes")).text
    assert agent.bookings.find("Ana Ruiz") == []


async def test_silence_reprompts_with_the_pending_question_then_says_goodbye(agent):
    dialog = agent.new_dialog("c14")
    await say(dialog, "I want to book an appointment")
    reprompt = await dialog.on_silence(1)
    assert reprompt.text.startswith("Are you still there?") and "day" in reprompt.text
    bye = await dialog.on_silence(2, final=True)
    assert bye.end_call and "Goodbye" in bye.text


async def test_barge_in_truncates_the_agent_turn_in_history(agent):
    dialog = agent.new_dialog("c15")
    greeting = await dialog.start()
    dialog.on_agent_heard("Hello, thanks for calling", greeting.text)
    assert dialog.state.history[-1] == ("agent", "Hello, thanks for calling")


async def test_calls_do_not_share_state(agent):
    one, two = agent.new_dialog("a"), agent.new_dialog("b")
    await say(one, "book Tuesday at 3pm, my name is Ana Ruiz")
    reply = await say(two, "I want to book an appointment")
    assert reply.text == "What day would you like to come in?"
    assert two.state.slots == {}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("name: x\ngreeting: hi\nintents: {}\n", "human"),
        ("- just a list\n", "mapping"),
        ("name: [unclosed\n", "yaml"),
        (CLINIC.read_text().replace("slots: [day, time, name]", "slots: [day, shoe]"), "shoe"),
    ],
)
def test_bad_agent_files_name_the_problem(tmp_path, embedder, content, fragment):
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment) as error:
        load_agent(path, bookings=BookingStore(":memory:"), embedder=embedder)
    assert str(path) in str(error.value)
