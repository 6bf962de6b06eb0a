"""The flow engine with the clinic agent, real offline MiniLM embeddings, and Whisper-style text."""

from __future__ import annotations

import asyncio
from datetime import date, time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicerail.dialog.base import AgentReply, Dialog, DialogFactory
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import FlowAgent, FlowDialog, load_agent
from voicerail.errors import StoreError
from voicerail.events.model import Outcome

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
SUNDAY = date(2026, 11, 22)


class MemoEmbedder:
    """The session's MiniLM, remembering vectors: each test builds an agent (75 examples)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def memo(embedder: MiniLMEmbedder) -> MemoEmbedder:
    return MemoEmbedder(embedder)


@pytest.fixture
def agent(memo: MemoEmbedder, tmp_path: Path) -> FlowAgent:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    return load_agent(CLINIC, bookings=store, embedder=memo, today=lambda: SUNDAY)


async def say(dialog: FlowDialog, *texts: str) -> AgentReply:
    reply = None
    for text in texts:
        reply = await dialog.on_user_turn(text, 0.9)
    assert reply is not None
    return reply


async def booked(agent: FlowAgent, call_id: str, request: str) -> AgentReply:
    """Book with everything said at once, then "yes"."""
    dialog = agent.new_dialog(call_id)
    await say(dialog, request)
    return await say(dialog, "Yes.")


def test_the_agent_is_a_dialog_factory_and_its_dialogs_are_dialogs(agent: FlowAgent) -> None:
    factory: DialogFactory = agent
    dialog: Dialog = factory.new_dialog("c0")
    assert factory.name == "Riverside Family Clinic" and dialog is not None


async def test_greeting_discloses_ai_and_recording(agent: FlowAgent) -> None:
    greeting = await agent.new_dialog("c").start()
    assert "AI assistant" in greeting.text and "recorded" in greeting.text
    assert greeting.node == "start" and not greeting.end_call


async def test_booking_conversation_as_whisper_transcribes_it(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c1")
    await dialog.start()
    reply = await say(dialog, "Hi, I'd like to book an appointment.")
    assert reply.text == "What day would you like to come in?" and reply.intent == "book"
    assert (await say(dialog, "Next Tuesday, please.")).text == "And what time works for you?"
    assert "full name" in (await say(dialog, "At 3 p.m.")).text
    confirm = await say(dialog, "My name is Maria Lopez.")
    assert (
        confirm.text == "So that's Tuesday, November 24 at 3 PM for Maria Lopez. Shall I book it?"
    )
    assert agent.bookings.list_bookings() == []  # nothing written before the yes
    done = await say(dialog, "Yes, please book it.")
    assert done.outcome is Outcome.COMPLETED and done.booking_id is not None
    assert done.text.startswith(f"You're all set. Your confirmation number is {done.booking_id}.")
    assert done.text.endswith("Is there anything else I can help you with?")
    assert done.data["action"] == "book_appointment"
    assert done.data["idempotency_key"] == "c1:book:1"
    assert done.pii == {"day": "Tuesday, November 24", "time": "3 PM", "name": "Maria Lopez"}
    assert "Maria" not in str(done.data)  # personal values only in pii
    [booking] = agent.bookings.list_bookings()
    assert (booking.name, booking.day, booking.time) == (
        "Maria Lopez",
        date(2026, 11, 24),
        time(15),
    )
    bye = await say(dialog, "No, that's all. Thank you, goodbye.")
    assert bye.end_call and bye.text.endswith("Goodbye!") and bye.outcome is None
    assert await say(dialog, "Hello?") == AgentReply(text="", end_call=True, node="goodbye")


async def test_everything_at_once_goes_straight_to_the_confirmation(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c2")
    reply = await say(dialog, "Book me Tuesday at 3pm, my name is Maria Lopez.")
    assert reply.text == "So that's Tuesday, November 24 at 3 PM for Maria Lopez. Shall I book it?"


async def test_partly_at_once_asks_only_for_what_is_missing(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c2")
    reply = await say(dialog, "Hi, book me in for Friday at 10 in the morning please.")
    assert reply.text == "May I have your full name, please?"
    confirm = await say(dialog, "Ana Ruiz.")
    assert "Friday, November 27 at 10 AM for Ana Ruiz" in confirm.text


async def test_no_at_the_confirmation_writes_nothing_and_asks_again(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c3")
    await say(dialog, "Book an appointment Tuesday at 3pm, my name is Ana Ruiz.")
    reply = await say(dialog, "No.")
    assert reply.text == "No problem, let's change it. What day would you like to come in?"
    assert agent.bookings.list_bookings() == []
    confirm = await say(dialog, "Wednesday at 4pm.")
    assert confirm.text == "So that's Wednesday, November 25 at 4 PM for Ana Ruiz. Shall I book it?"


async def test_a_correction_at_the_confirmation_is_confirmed_again(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c3")
    await say(dialog, "Book an appointment Tuesday at 3pm, my name is Ana Ruiz.")
    reply = await say(dialog, "No, make it Wednesday.")
    assert reply.text == "So that's Wednesday, November 25 at 3 PM for Ana Ruiz. Shall I book it?"
    assert (await say(dialog, "Yes.")).outcome is Outcome.COMPLETED


async def test_two_misunderstandings_in_a_row_hand_off(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c4")
    first = await say(dialog, "All circuits are busy now.")
    assert first.text == "Sorry, I didn't quite get that. How can I help you today?"
    assert not first.handoff and first.data["misunderstandings"] == 1
    second = await say(dialog, "The conference is full.")
    assert second.handoff and second.end_call and second.outcome is Outcome.HANDOFF
    assert "transfer you" in second.text and second.data["handoff_reason"] == "misunderstood"


async def test_an_understood_turn_resets_the_misunderstanding_count(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c5")
    await say(dialog, "All circuits are busy now.", "I want to make an appointment.")
    assert not (await say(dialog, "The conference is full.")).handoff


async def test_an_empty_transcript_is_a_misunderstanding(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c5")
    assert (await say(dialog, "")).data["not_understood"] == "empty"
    assert (await say(dialog, "  ")).handoff


@pytest.mark.parametrize(
    "text",
    ["Can I talk to a real person?", "Transfer me to the receptionist, please.", "Operator."],
)
async def test_an_explicit_request_for_a_human_hands_off(agent: FlowAgent, text: str) -> None:
    dialog = agent.new_dialog("c6")
    await say(dialog, "I'd like to book an appointment on Tuesday.")
    reply = await say(dialog, text)
    assert reply.handoff and reply.outcome is Outcome.HANDOFF and reply.intent == "human"
    assert reply.text == "I'll transfer you to our front desk now. Please hold for a moment."
    assert reply.data["handoff_reason"] == "requested"


async def test_robot_question_is_answered_truthfully_and_the_flow_resumes(
    agent: FlowAgent,
) -> None:
    dialog = agent.new_dialog("c7")
    await say(dialog, "I'd like to book an appointment on Tuesday.")
    reply = await say(dialog, "Wait, am I talking to a robot?")
    assert reply.text.startswith("Yes, I'm an AI assistant, not a person.")
    assert reply.text.endswith("And what time works for you?") and not reply.handoff
    assert reply.intent == "robot" and reply.node == "book"
    assert "full name" in (await say(dialog, "3 pm.")).text


async def test_opening_hours_from_the_middle_of_a_booking(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c8")
    await say(dialog, "I'd like to book an appointment.")
    reply = await say(dialog, "Actually, are you open on Saturday?")
    assert "Saturday from 9 AM to noon" in reply.text
    assert reply.text.endswith("What day would you like to come in?")


async def test_switching_task_midway(agent: FlowAgent) -> None:
    await booked(agent, "c9", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    dialog = agent.new_dialog("c10")
    await say(dialog, "I'd like to book an appointment.", "My name is Ana Ruiz.")
    reply = await say(dialog, "Actually, I need to cancel my appointment.")
    assert reply.node == "cancel" and "Tuesday, November 24 at 3 PM" in reply.text


async def test_keypad_zero_hands_off(agent: FlowAgent) -> None:
    reply = await agent.new_dialog("c11").on_dtmf("0")
    assert reply.handoff and reply.outcome is Outcome.HANDOFF
    assert reply.data["handoff_reason"] == "keypad"


async def test_keypad_one_and_two_answer_a_confirmation(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c12")
    await say(dialog, "Book Tuesday at 3pm, my name is Ana Ruiz.")
    declined = await dialog.on_dtmf("2")
    assert declined.text.endswith("What day would you like to come in?")
    await say(dialog, "Wednesday at 4pm.")
    assert (await dialog.on_dtmf("1")).outcome is Outcome.COMPLETED
    bye = await dialog.on_dtmf("2")  # "anything else?" → no
    assert bye.end_call and bye.node == "goodbye"


async def test_a_meaningless_key_is_a_misunderstanding(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c13")
    reply = await dialog.on_dtmf("7")
    assert reply.data["not_understood"] == "keypad" and not reply.handoff
    assert (await dialog.on_dtmf("#")).handoff


async def test_reschedule_finds_the_booking_by_name_and_moves_it(agent: FlowAgent) -> None:
    first = await booked(agent, "c14", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    move = agent.new_dialog("c15")
    ask = await say(move, "I need to reschedule my appointment.", "It's Ana Ruiz.")
    assert ask.text.startswith("I found your appointment on Tuesday, November 24 at 3 PM.")
    confirm = await say(move, "Thursday at 11 in the morning.")
    assert "to Thursday, November 26 at 11 AM. Is that right?" in confirm.text
    done = await say(move, "Yes, that's right.")
    assert done.outcome is Outcome.COMPLETED and done.booking_id == first.booking_id
    [booking] = agent.bookings.find("Ana Ruiz")
    assert (booking.day, booking.time) == (date(2026, 11, 26), time(11))


async def test_cancel_picks_the_booking_on_the_day_the_caller_names(agent: FlowAgent) -> None:
    await booked(agent, "c16", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    friday = await booked(agent, "c17", "Book Friday at 10am, my name is Ana Ruiz.")
    cancel = agent.new_dialog("c18")
    confirm = await say(cancel, "I want to cancel my Friday appointment.", "Ana Ruiz.")
    assert "Friday, November 27 at 10 AM" in confirm.text
    done = await say(cancel, "Yes.")
    assert "has been cancelled" in done.text and done.booking_id == friday.booking_id
    assert [b.day for b in agent.bookings.find("Ana Ruiz")] == [date(2026, 11, 24)]


async def test_no_to_a_cancellation_leaves_the_booking(agent: FlowAgent) -> None:
    await booked(agent, "c19", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    cancel = agent.new_dialog("c20")
    await say(cancel, "Please cancel my appointment.", "My name is Ana Ruiz.")
    reply = await say(cancel, "No, sorry.")
    assert reply.text.startswith("Okay, I'll leave your appointment as it is.")
    assert len(agent.bookings.find("Ana Ruiz")) == 1


async def test_reschedule_without_a_booking_says_so(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c21")
    reply = await say(dialog, "I'd like to move my appointment. My name is Nobody Known.")
    assert reply.text.startswith("I couldn't find an appointment under Nobody Known.")
    assert reply.node == "more" and reply.data["found"] is False and reply.outcome is None


async def test_a_second_booking_in_the_same_call_gets_its_own_key(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c22")
    await say(dialog, "Book Tuesday at 3pm, my name is Ana Ruiz.", "Yes.")
    asked = await say(dialog, "Yes, I'd like to book another appointment.")
    assert asked.text == "What day would you like to come in?"  # the name is kept
    second = await say(dialog, "Friday at 10am.", "Yes.")
    assert second.data["idempotency_key"] == "c22:book:2"
    assert len(agent.bookings.list_bookings()) == 2


async def test_a_call_replayed_on_another_worker_does_not_book_twice(agent: FlowAgent) -> None:
    """The same call id walking the same turns again (a resumed call) writes nothing new."""
    first = await booked(agent, "c23", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    again = await booked(agent, "c23", "Book Tuesday at 3pm, my name is Ana Ruiz.")
    assert again.booking_id == first.booking_id
    assert len(agent.bookings.list_bookings()) == 1


async def test_a_failing_store_hands_off(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c24")
    await say(dialog, "Book Tuesday at 3pm, my name is Ana Ruiz.")
    agent.bookings.close()
    reply = await say(dialog, "Yes.")
    assert reply.handoff and reply.data["handoff_reason"] == "store_failed"
    with pytest.raises(StoreError):
        agent.bookings.list_bookings()


async def test_silence_reprompts_with_the_pending_question_then_says_goodbye(
    agent: FlowAgent,
) -> None:
    dialog = agent.new_dialog("c25")
    await say(dialog, "I want to book an appointment.")
    reprompt = await dialog.on_silence(1)
    assert reprompt.text == "Are you still there? What day would you like to come in?"
    assert not reprompt.end_call and reprompt.data["silences"] == 1
    bye = await dialog.on_silence(2, final=True)
    assert bye.end_call and bye.text.endswith("Goodbye!")


async def test_barge_in_truncates_the_agent_turn_in_history(agent: FlowAgent) -> None:
    dialog = agent.new_dialog("c26")
    greeting = await dialog.start()
    await say(dialog, "I want to book an appointment.")
    dialog.on_agent_heard("Hello, thanks for calling", greeting.text)
    assert dialog.state.history[0] == ("agent", "Hello, thanks for calling")
    assert dialog.state.history[-1] == ("agent", "What day would you like to come in?")


async def test_a_confirmation_cut_off_by_barge_in_is_asked_again(agent: FlowAgent) -> None:
    """A "yes" over a confirmation the caller never heard to its end books nothing yet."""
    dialog = agent.new_dialog("c27")
    confirm = await say(dialog, "Book Tuesday at 3pm, my name is Ana Ruiz.")
    dialog.on_agent_heard("So that's Tuesday,", confirm.text)
    again = await say(dialog, "Yes.")
    assert again.text == confirm.text and agent.bookings.list_bookings() == []
    assert (await say(dialog, "Yes.")).outcome is Outcome.COMPLETED


async def test_calls_do_not_share_state(agent: FlowAgent) -> None:
    one, two = agent.new_dialog("a"), agent.new_dialog("b")
    first, second = await asyncio.gather(
        say(one, "Book Tuesday at 3pm, my name is Ana Ruiz."),
        say(two, "I want to book an appointment."),
    )
    assert "Ana Ruiz" in first.text
    assert second.text == "What day would you like to come in?"
    assert two.state.slots == {} and "Ana" not in str(two.state.history)
    assert one.state.slots["name"] == "Ana Ruiz"


MINIMAL = """
name: Pizza Line
disclosure: This is an automated assistant.
greeting: "Hi! {disclosure} Want to hear today's special?"
intents:
  robot: [are you a robot]
  human: [let me talk to a person]
  special: [what's the special]
nodes:
  start:
    prompt: Want to hear today's special?
    transitions: {yes: special, no: bye}
  special:
    say: Today it's margherita.
    next: bye
  bye:
    say: Bye!
    end_call: true
"""


async def test_a_minimal_agent_with_default_messages(
    embedder: MiniLMEmbedder, tmp_path: Path
) -> None:
    """Unquoted yes/no keys, default handoff and answers: the schema is not clinic-specific."""
    path = tmp_path / "pizza.yaml"
    path.write_text(MINIMAL)
    agent = load_agent(path, bookings=BookingStore(":memory:"), embedder=embedder)
    dialog = agent.new_dialog("p1")
    assert (await dialog.start()).text.startswith("Hi! This is an automated assistant.")
    robot = await say(dialog, "Are you a robot?")
    assert robot.text == "This is an automated assistant. Want to hear today's special?"
    reply = await say(dialog, "Yes please.")
    assert reply.text == "Today it's margherita. Bye!" and reply.end_call
